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
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.caching import CACHED, code_fingerprint, retry_on_io
from flows.chunking import content_chunks, prepare_output, run_chunks
from pipeline.formats.estimated_poses import PersonMasks
from pipeline.readers.layouts import is_photo_folder
from pipeline.formats.files import atomic_path, cache_dir, file_sha256, tree_signature
from pipeline.keypoints_config import KeypointsConfig
from pipeline.readers.layouts import keypoint_only_people
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
def list_images(data: str, layout: str | None, signature: str, relabel: bool = False,
                split: str | None = None, person_masks: str | None = None) -> dict:
    """Keypoint-only people of ``data`` grouped by image: ``images``, plain dicts (``image``,
    ``image_sha256``, ``people``: person_id, image_size, keypoints, derived, split, source),
    and ``skipped``, the [file, reason] of every item the reader could not use (missing or
    unreadable photo, bad keypoints entry).  ``relabel`` lists labelled people too (labels
    dropped, :func:`pipeline.readers.layouts.keypoint_only_people`); ``split`` keeps one split's
    people.  A person's mask is its COCO annotation's own (``person_rle``), else its
    record's ``person_mask`` (a keypoints folder) or the matching one of the keypoints folder
    ``person_masks``
    (:class:`pipeline.formats.estimated_poses.PersonMasks`), with its SHA-256 so that a changed
    mask relabels its image.  ``signature`` (:func:`pipeline.formats.files.tree_signature` of
    ``data`` and ``person_masks``) keys the cache."""
    report = ReadReport()
    masks = PersonMasks(person_masks) if person_masks else None
    by_image: OrderedDict[str, dict] = OrderedDict()
    for r in keypoint_only_people(data, layout, report, relabel, split):
        path = str(Path(r.image_path).resolve())
        entry = by_image.setdefault(path, {"image": path, "image_sha256": file_sha256(path), "people": []})
        entry["people"].append({
            "person_id": r.person_id, "image_size": list(r.image_size), "source": r.source_format,
            "keypoints": keypoints_to_json(r.keypoints) if r.keypoints is not None else None,
            "derived": r.keypoints_derived.tolist() if r.keypoints_derived is not None else None,
            "split": r.split, "other_people_rle": (r.meta or {}).get("other_people_rle"), **_mask_fields(r, masks)})
    if report.skipped:
        log = get_run_logger()
        log.warning("%s: %s", data, report.summary())
        report.log_skipped(log)
    return {"images": list(by_image.values()), "skipped": [list(s) for s in report.skipped]}


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
    """One Synthesizer per worker (thread pool or Dask process), reused by its tasks; the
    partition labeller when the run has no refiner checkpoint."""
    cfg = SynthConfig.model_validate_json(cfg_json)
    if cfg.checkpoint is None:
        return PartitionLabeller(cfg)
    torch.set_num_threads(cfg.threads_per_task)
    with open(bank_path, "rb") as f:
        bank = pickle.load(f)
    return Synthesizer(cfg, bank)


def _people(image: dict) -> list[PersonRecord]:
    """The PersonRecords of one of :func:`list_images`' image entries."""
    return [PersonRecord(Path(image["image"]), tuple(p["image_size"]), p["person_id"], p["source"],
                         keypoints=None if p["keypoints"] is None else json_to_keypoints(p["keypoints"]),
                         keypoints_derived=None if p["derived"] is None else np.array(p["derived"], bool),
                         split=p["split"], meta={"person_mask": p.get("person_mask"), "rle": p.get("person_rle"),
                                                 "other_people_rle": p.get("other_people_rle")})
            for p in image["people"]]


@task(cache_policy=CACHED, persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def synthesize_chunk(images: list[dict], cfg: SynthConfig, checkpoint_sha256: str, bank_path: str, code: str,
                     force: bool = False) -> list[str]:
    """Label the people of a chunk of images (:func:`flows.chunking.content_chunks`) into
    ``cfg.out``, ``cfg.batch_size`` people per refiner pass; returns one status per
    image.  Images already done with intact files are not redone (``images_reused``), so
    a chunk rerun for one new or damaged image relabels only that image.  Cached on the
    images' content and keypoints, the run config, the checkpoint's hash, the bank and
    the code; the flow bypasses the cache when an image's files are missing or changed."""
    synth = _synthesizer(cfg.model_dump_json(), bank_path)
    return synth.process_images([(Path(im["image"]), _people(im)) for im in images], Path(cfg.out), force=force)


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
        listed = list_images(cfg.data, cfg.layout, signature, cfg.relabel, cfg.split, cfg.person_masks)
        images = listed["images"]
        LISTED_IMAGES[str(out_path.resolve())] = len(images)
        removed = prepare_output(out_path, {im["image"] for im in images}, remove_stale_labels, log, "labels", cfg.data)
        write_read_skips(out_path, listed["skipped"])
        bank_path = bank_for(cfg, ckpt) if ckpt is not None else ""
        log.info("%d images with keypoint-only people in %s", len(images), cfg.data)
        chunks = [[images[i] for i in c] for c in content_chunks([im["image"] for im in images], cfg.chunk_size)]
        results = run_chunks(synthesize_chunk, chunks,
                             lambda chunk: not force and all(item_intact(out_path, im["image"]) for im in chunk),
                             lambda chunk: (chunk, cfg, sha, bank_path, code, force), log)
        fresh = force or bool(removed) or any(r != "images_reused" for r in results) or not top_level_intact(out_path)
        totals = finalize_dataset.with_options(refresh_cache=fresh)(
            cfg, bank_path, [im["image"] for im in images], code)
        counts = {s: results.count(s) for s in ("images_done", "images_reused", "images_failed")}
        totals = dict(totals, **counts, images_removed=len(removed), items_unreadable=len(listed["skipped"]))
        create_table_artifact(key="synthesis-totals", table=[{"quantity": q, "value": v} for q, v in totals.items()],
                              description=f"synthesized labels in {cfg.out}")
        log.info("%s: %s", cfg.out, totals)
        return totals
