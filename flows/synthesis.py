"""The ``synthesize-labels`` flow: index the labelled bank -> priors -> refine -> write the
dataset, one task per chunk of images (:mod:`flows.chunking`), cached across runs.

A rerun with unchanged inputs finds every task in Prefect's cache (nothing recomputes); a
rerun after new images arrive reruns only their chunks, where only they are labelled.  Each
image's files are written atomically by
:meth:`refine_net.synthesize.Synthesizer.process_images`, so a killed run
leaves no partial file and the next run finishes the rest.
"""
from __future__ import annotations

import functools
import hashlib
import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.caching import CACHED, cached_except, code_fingerprint, retry_on_io
from flows.chunking import cached_status, chunk_key, content_chunks, prepare_output, run_chunks, unchanged_chunks
from pipeline.formats.estimated_poses import PersonMasks
from pipeline.readers.layouts import is_photo_folder
from pipeline.formats.files import atomic_path, cache_dir, file_sha256, tree_signature
from pipeline.keypoints_config import KeypointsConfig
from pipeline.readers.layouts import iter_keypoint_only_people
from pipeline.formats.listing import read_people, write_listing
from pipeline.formats.item_folder import item_name, read_run_record, scan_item_folder, write_run_record
from pipeline.formats.output_lock import output_lock
from pipeline.priors.bank import PriorConfig
from pipeline.readers.prior_bank import bank_from_dataset
from pipeline.formats.folder import json_to_keypoints, keypoints_to_json
from pipeline.formats.records import VAL_FRACTION, PersonRecord, ReadReport
from pipeline.formats.synth_dataset import (KEYPOINTS_DIR, claim_output, item_intact, remove_stale_labels,
                                    top_level_intact, write_read_skips)
from refine_net.checkpoint import Checkpoint, load_checkpoint
from refine_net.config import SynthConfig
from refine_net.onnx_export import refiner_onnx
from refine_net.partition_labeller import LABELLER, PartitionLabeller
from refine_net.synthesize import Synthesizer, bank_folders, synthesis_prior_config
from refine_net.train import training_config


#: {output folder (resolved): images listed}, set by :func:`synthesize_labels` in its own process
#: once the input is read, for a progress bar's total without reading the input twice
LISTED_IMAGES: dict[str, int] = {}


@task(cache_policy=CACHED, persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def list_images(data: str, layout: str | None, signature: str, listing: str, relabel: bool = False,
                split: str | None = None, person_masks: str | None = None) -> dict:
    """Keypoint-only people of ``data``, streamed from the reader into the listing file
    ``listing`` (:mod:`pipeline.formats.listing`: one line per person, plain dicts with
    person_id, image_size, keypoints, derived, split, source and the mask fields); returns
    ``images``, the listing's :class:`pipeline.formats.listing.ListedImage` entries as
    [image, key, ranges] in reader order, and ``skipped``, the [file, reason] of every item
    the reader could not use (missing or unreadable photo, bad keypoints entry).  Memory
    holds the index, not the people.  ``relabel`` lists labelled people too (labels dropped,
    :func:`pipeline.readers.layouts.iter_keypoint_only_people`); ``split`` keeps one split's
    people.  A person's mask is its COCO annotation's own (``person_rle``), else its
    record's ``person_mask`` (a keypoints folder) or the matching one of the keypoints folder
    ``person_masks`` (:class:`pipeline.formats.estimated_poses.PersonMasks`), with its
    SHA-256 so that a changed mask relabels its image.  ``signature``
    (:func:`pipeline.formats.files.tree_signature` of ``data`` and ``person_masks``) keys the
    cache; the flow bypasses it when the listing file is gone."""
    report = ReadReport()
    masks = PersonMasks(person_masks) if person_masks else None
    photo_sha: dict[str, str] = {}

    def people():
        for r in iter_keypoint_only_people(data, layout, report, relabel, split):
            path = str(Path(r.image_path).resolve())
            if path not in photo_sha:
                photo_sha[path] = file_sha256(path)
            yield path, photo_sha[path], {
                "image": path, "image_sha256": photo_sha[path], "person_id": r.person_id,
                "image_size": list(r.image_size), "source": r.source_format,
                "keypoints": keypoints_to_json(r.keypoints) if r.keypoints is not None else None,
                "derived": r.keypoints_derived.tolist() if r.keypoints_derived is not None else None,
                "split": r.split, "other_people_rle": (r.meta or {}).get("other_people_rle"), **_mask_fields(r, masks)}

    index = write_listing(people(), listing)
    prune_listings(Path(listing))
    if report.skipped:
        log = get_run_logger()
        log.warning("%s: %s", data, report.summary())
        report.log_skipped(log)
    return {"images": [[e.image, e.key, e.ranges] for e in index], "skipped": [list(s) for s in report.skipped]}


def listing_file(source: tuple, content: tuple) -> Path:
    """Where :func:`list_images` writes the listing of the input ``source`` (data, layout,
    options) as it is now (``content``: its signature, the code): the cache folder."""
    def digest(x) -> str:
        return hashlib.sha256(json.dumps(x, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"listing-{digest(source)}-{digest(content)}.jsonl"


def prune_listings(listing: Path) -> None:
    """Delete the listings of the same input made before it changed (a 10^5-people listing
    is about 140 MB); a run still reading one of them stops with a DataError naming it."""
    source = listing.name.rsplit("-", 1)[0]
    for old in listing.parent.glob(f"{source}-*.jsonl"):
        if old != listing:
            old.unlink(missing_ok=True)


def _mask_fields(r: PersonRecord, masks: PersonMasks | None) -> dict:
    """``person_rle`` (a COCO annotation's own instance mask, which wins), or
    ``person_mask`` (absolute path or None) and ``person_mask_sha256`` of a record."""
    if (r.meta or {}).get("rle"):
        return {"person_rle": r.meta["rle"], "person_mask": None, "person_mask_sha256": None}
    mask = (r.meta or {}).get("person_mask")
    if mask is None and masks is not None and r.keypoints is not None:
        mask = masks.find(r.image_path, r.keypoints)
    return {"person_mask": mask, "person_mask_sha256": file_sha256(mask) if mask else None}


@task(cache_policy=CACHED, persist_result=True)
def index_bank(bank_data: list[str], bank_split: str | None, prior: dict, label_set: str, signature: str,
               code: str, val_fraction: float = VAL_FRACTION) -> str:
    """Build the prior bank (pose index + part patches) of the labelled datasets
    ``bank_data`` in the refiner's ``label_set`` and pickle it in the cache folder;
    returns the file.  Cached on the bank's files (``signature``), split, prior config
    (crop frame and morphing; not ``k``, which each query picks, so a new ``--k`` reuses
    the bank), label set and code."""
    bank = bank_from_dataset(bank_data, bank_split, PriorConfig(**prior), label_set=label_set, val_fraction=val_fraction)
    key = hashlib.sha256(json.dumps([bank_data, bank_split, prior, label_set, signature, code, val_fraction],
                                    sort_keys=True).encode())
    path = cache_dir() / f"bank-{key.hexdigest()[:20]}.pkl"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(bank, f, protocol=pickle.HIGHEST_PROTOCOL)
    get_run_logger().info("bank of %d exemplars from %s (%s) -> %s", len(bank.exemplars), ", ".join(bank_data),
                          bank_split or "all splits", path)
    return str(path)


def bank_for(cfg: SynthConfig, ckpt: Checkpoint) -> str:
    """The cached prior bank file of a synthesis run with the refiner ``ckpt`` (built on
    first use)."""
    folders = bank_folders(cfg, ckpt)
    prior = {f: v for f, v in asdict(synthesis_prior_config(ckpt, cfg.k)).items() if f != "k"}   # k: per query
    return index_bank(folders, cfg.bank_split, prior, ckpt.label_set, "+".join(tree_signature(f) for f in folders),
                      code_fingerprint(), training_config(ckpt).val_fraction)


@functools.lru_cache(maxsize=2)
def _synthesizer(cfg_json: str, bank_path: str) -> Synthesizer | PartitionLabeller:
    """One Synthesizer per process (the thread runner's worker threads share it, so it keeps
    no per-call state; each Dask worker process has its own), reused by its tasks; the
    partition labeller when the run has no refiner checkpoint."""
    cfg = SynthConfig.model_validate_json(cfg_json)
    if cfg.checkpoint is None:
        return PartitionLabeller(cfg)
    torch.set_num_threads(cfg.threads_per_task)
    with open(bank_path, "rb") as f:
        bank = pickle.load(f)
    return Synthesizer(cfg, bank)


def _people(people: list[dict]) -> list[PersonRecord]:
    """PersonRecords of a listing's person dicts (:func:`list_images`)."""
    return [PersonRecord(Path(p["image"]), tuple(p["image_size"]), p["person_id"], p["source"],
                         keypoints=None if p["keypoints"] is None else json_to_keypoints(p["keypoints"]),
                         keypoints_derived=None if p["derived"] is None else np.array(p["derived"], bool),
                         split=p["split"], meta={"person_mask": p.get("person_mask"), "rle": p.get("person_rle"),
                                                 "other_people_rle": p.get("other_people_rle")})
            for p in people]


@task(cache_policy=cached_except("listing", "ranges"), persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def synthesize_chunk(images: list[list[str]], cfg: SynthConfig, checkpoint_sha256: str, bank_path: str, code: str,
                     listing: str, ranges: list[list[list[int]]], force: bool = False) -> list[str]:
    """Label the people of a chunk of images (:func:`flows.chunking.content_chunks`) into
    ``cfg.out``, ``cfg.batch_size`` people per refiner pass; returns one status per
    image.  ``images``: [image, key] of each (:class:`pipeline.formats.listing.ListedImage`);
    their people are read from ``listing`` at ``ranges`` (one list per image), which do not
    key the cache (an image added before them moves the offsets, not the people).  Images
    already done with intact files are not redone (``images_reused``), so a chunk rerun for
    one new or damaged image relabels only that image.  Cached on the images' keys, the run
    config, the checkpoint's hash, the bank and the code; the flow bypasses the cache when
    an image's files are missing or changed."""
    synth = _synthesizer(cfg.model_dump_json(), bank_path)
    work = [(Path(image), _people(read_people(listing, where))) for (image, _), where in zip(images, ranges)]
    return synth.process_images(work, Path(cfg.out), force=force)


@task(cache_policy=CACHED, persist_result=True)
def finalize_dataset(cfg: SynthConfig, bank_path: str, images: list[str], code: str) -> dict:
    """people.json, annotations.json (COCO RLE), manifest.parquet, dataset.json from the
    item records of ``images``; returns totals.  Same Synthesizer key as
    :func:`synthesize_chunk`, so a thread-runner worker's loaded refiner and bank are
    reused.  The flow bypasses the cache when an image was redone or a file is missing."""
    return _synthesizer(cfg.model_dump_json(), bank_path).finalize(cfg.out)


def task_runner(dask_address: str | None, workers: int):
    """Prefect's thread runner, or prefect-dask's runner on an existing Dask cluster."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=workers)


def photos_with_keypoints(cfg: SynthConfig, force: bool) -> SynthConfig:
    """Estimate the keypoints of the photo folder ``cfg.data`` into ``cfg.out/keypoints``
    (:func:`flows.keypoints.estimate_keypoints`) and return ``cfg`` reading that folder.
    Raises ConfigError in one line when partsynth[pose] is not installed."""
    from flows.keypoints import estimate_keypoints, keypoints_runner
    from pipeline.blazepose import mediapipe_pose

    mediapipe_pose(f"{cfg.data} is a folder of photos without keypoints")
    kp_out = str(Path(cfg.out) / KEYPOINTS_DIR)
    kp = KeypointsConfig(data=cfg.data, out=kp_out)
    estimate_keypoints.with_options(task_runner=keypoints_runner(kp))(kp, force=force)
    return cfg.model_copy(update={"data": kp_out, "layout": "partsynth"})


@dataclass
class ChunkResults:
    """Each chunk's key (:func:`flows.chunking.chunk_key`) and item statuses, in chunk order."""

    keys: list[str]
    per_chunk: list[list[str]]


def label_chunks(chunks: list[list], cfg: SynthConfig, sha: str, bank_path: str, code: str, listing: str,
                 force: bool, out: Path, log) -> ChunkResults:
    """Run :func:`synthesize_chunk` over ``chunks`` (lists of [image, key, ranges]), except
    the chunks the output's last finished run did with the same settings and images while
    its files are as that run left them (:func:`flows.chunking.unchanged_chunks`): a rerun
    with nothing changed starts no task and reads no record.  Where the folder changed
    since, every image's files are checked (:func:`pipeline.formats.synth_dataset.item_intact`)."""
    scan = scan_item_folder(out)
    record = {} if force else read_run_record(out)
    trusted = bool(record) and record.get("items_state") == scan.state
    run_key = hashlib.sha256(json.dumps([cfg.model_dump_json(), sha, bank_path, code]).encode()).hexdigest()
    keys = [chunk_key(run_key, [im[1] for im in chunk]) for chunk in chunks]
    names = [[item_name(im[0]) for im in chunk] for chunk in chunks]
    known = unchanged_chunks(record, scan, keys, names)
    if known:
        log.info("%d of %d images as the last run left them", sum(len(chunks[i]) for i in known),
                 sum(map(len, chunks)))
    todo = [i for i in range(len(chunks)) if i not in known]

    def intact(chunk: list) -> bool:
        if force:
            return False
        if trusted:
            return all(item_name(im[0]) in scan.items for im in chunk)
        return all(item_intact(out, im[0]) for im in chunk)

    ran = iter(run_chunks(synthesize_chunk, [chunks[i] for i in todo], intact,
                          lambda chunk: ([im[:2] for im in chunk], cfg, sha, bank_path, code, listing,
                                         [im[2] for im in chunk], force), log))
    per_chunk = [[cached_status(s) for s in known[i]] if i in known else [next(ran) for _ in chunks[i]]
                 for i in range(len(chunks))]
    return ChunkResults(keys, per_chunk)


@flow(name="synthesize-labels", log_prints=True)
def synthesize_labels(cfg: SynthConfig, force: bool = False) -> dict:
    """Label every keypoint-only person of ``cfg.data`` with the refiner at
    ``cfg.checkpoint`` into ``cfg.out`` (see :class:`refine_net.config.SynthConfig`); without
    a checkpoint (``labels="pascal6"``), with the partition labeller
    (:class:`refine_net.partition_labeller.PartitionLabeller`: each person's own mask split
    by its skeleton).

    Prefect's cache serves an image only while its files in ``cfg.out`` are intact (item
    record, label PNG with its recorded hash, probabilities); deleted or changed files are
    regenerated, and so are the summary files.  ``force`` recomputes everything.  Images
    no longer in the input lose their records and labels.

    A plain folder of photos (no layout partsynth reads, so no keypoints) first goes
    through the ``estimate-keypoints`` flow into ``cfg.out/keypoints`` (BlazePose, one
    person per photo; for person boxes run ``partsynth keypoints --boxes`` and synthesize
    from its folder), whose people are then labelled.

    Returns: totals (images, people labelled, people skipped), per-status image counts
    (``images_reused``: served from cache or from intact files) and ``images_removed``.
    Raises: CheckpointError when ``cfg.checkpoint`` is not a refiner checkpoint;
    ConfigError when ``cfg.out`` is the input or a non-empty folder that is not ours, when
    another run is writing into it (:func:`pipeline.formats.output_lock.output_lock`), or when
    photos need keypoints and partsynth[pose] is not installed."""
    log = get_run_logger()
    out_path = Path(cfg.out)
    claim_output(out_path, cfg.data)
    ckpt = sha = None
    if cfg.checkpoint is None:                                       # the partition labeller: no refiner, no bank
        sha = LABELLER
    else:
        ckpt = load_checkpoint(cfg.checkpoint, kind="refiner")      # a clear error before any work
        sha = file_sha256(cfg.checkpoint)
        if cfg.engine == "onnx":
            refiner_onnx(cfg.checkpoint, sha)                        # exported once, before the workers start
    with output_lock(out_path):
        if is_photo_folder(cfg.data, cfg.layout):
            cfg = photos_with_keypoints(cfg, force)
        code = code_fingerprint()
        signature = tree_signature(cfg.data) + (f"+{tree_signature(cfg.person_masks)}" if cfg.person_masks else "")
        listing = listing_file((cfg.data, cfg.layout, cfg.relabel, cfg.split, cfg.person_masks), (signature, code))
        listed = list_images.with_options(refresh_cache=not listing.is_file())(
            cfg.data, cfg.layout, signature, str(listing), cfg.relabel, cfg.split, cfg.person_masks)
        images = listed["images"]                    # [image, key, ranges] per image
        LISTED_IMAGES[str(out_path.resolve())] = len(images)
        removed = prepare_output(out_path, {im[0] for im in images}, remove_stale_labels, log, "labels", cfg.data)
        write_read_skips(out_path, listed["skipped"])
        bank_path = bank_for(cfg, ckpt) if ckpt is not None else ""
        log.info("%d images with keypoint-only people in %s", len(images), cfg.data)
        chunks = [[images[i] for i in c] for c in content_chunks([im[0] for im in images], cfg.chunk_size)]
        done = label_chunks(chunks, cfg, sha, bank_path, code, str(listing), force, out_path, log)
        statuses = [s for chunk in done.per_chunk for s in chunk]
        fresh = force or bool(removed) or any(r != "images_reused" for r in statuses) or not top_level_intact(out_path)
        totals = finalize_dataset.with_options(refresh_cache=fresh)(
            cfg, bank_path, [im[0] for im in images], code)
        write_run_record(out_path, dict(zip(done.keys, done.per_chunk)))
        counts = {s: statuses.count(s) for s in ("images_done", "images_reused", "images_failed")}
        totals = dict(totals, **counts, images_removed=len(removed), items_unreadable=len(listed["skipped"]))
        create_table_artifact(key="synthesis-totals", table=[{"quantity": q, "value": v} for q, v in totals.items()],
                              description=f"synthesized labels in {cfg.out}")
        log.info("%s: %s", cfg.out, totals)
        return totals
