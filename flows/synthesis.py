"""The ``synthesize-labels`` flow: index the labelled bank -> priors -> refine -> write the
dataset, one task per image (``.map()``), cached across runs.

A rerun with unchanged inputs finds every task in Prefect's cache (nothing recomputes); a
rerun after new images arrive processes only them.  Each image's files are written
atomically by :meth:`refine_net.synthesize.Synthesizer.process_image`, so a killed run
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
from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.caching import CACHED, cache_dir, code_fingerprint, retry_on_io
from pipeline.files import atomic_path, file_sha256, tree_signature
from pipeline.readers.folder import json_to_keypoints, keypoints_to_json
from pipeline.records import PersonRecord, ReadReport
from refine_net.synthesize import (SynthConfig, Synthesizer, build_bank, item_name, keypoint_only_people,
                                   remove_partial_files, synthesis_prior_config)


@task(cache_policy=CACHED, persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def list_images(data: str, layout: str | None, signature: str) -> list[dict]:
    """Keypoint-only people of ``data`` grouped by image, as plain dicts (``image``,
    ``image_sha256``, ``people``: person_id, image_size, keypoints, derived, split, source).
    ``signature`` (:func:`pipeline.files.tree_signature` of ``data``) keys the cache."""
    report = ReadReport()
    by_image: OrderedDict[str, dict] = OrderedDict()
    for r in keypoint_only_people(data, layout, report):
        path = str(Path(r.image_path).resolve())
        entry = by_image.setdefault(path, {"image": path, "image_sha256": file_sha256(path), "people": []})
        entry["people"].append({
            "person_id": r.person_id, "image_size": list(r.image_size), "source": r.source_format,
            "keypoints": keypoints_to_json(r.keypoints) if r.keypoints is not None else None,
            "derived": r.keypoints_derived.tolist() if r.keypoints_derived is not None else None,
            "split": r.split})
    if report.skipped:
        get_run_logger().warning("%s: %s", data, report.summary())
    return list(by_image.values())


@task(cache_policy=CACHED, persist_result=True)
def index_bank(bank_data: str, bank_split: str | None, prior: dict, signature: str, code: str) -> str:
    """Build the prior bank (pose index + part patches) and pickle it in the cache folder;
    returns the file.  Cached on the bank's files (``signature``), split, prior config and
    code."""
    from pipeline.prior import PriorConfig

    bank = build_bank(bank_data, bank_split, PriorConfig(**prior))
    key = hashlib.sha256(json.dumps([bank_data, bank_split, prior, signature, code], sort_keys=True).encode())
    path = cache_dir() / f"bank-{key.hexdigest()[:20]}.pkl"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(bank, f, protocol=pickle.HIGHEST_PROTOCOL)
    get_run_logger().info("bank of %d exemplars from %s (%s) -> %s", len(bank.exemplars), bank_data,
                          bank_split or "all splits", path)
    return str(path)


@functools.lru_cache(maxsize=2)
def _synthesizer(checkpoint: str, bank_path: str, bank_data: str, bank_split: str | None, k: int,
                 save_probabilities: bool, threads: int) -> Synthesizer:
    """One Synthesizer per worker (thread pool or Dask process), reused by its tasks."""
    torch.set_num_threads(threads)
    with open(bank_path, "rb") as f:
        bank = pickle.load(f)
    return Synthesizer(SynthConfig(checkpoint=checkpoint, bank_data=bank_data, k=k,
                                   save_probabilities=save_probabilities, bank_split=bank_split), bank)


@task(cache_policy=CACHED, persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def synthesize_image(image: dict, out: str, checkpoint: str, checkpoint_sha256: str, bank_path: str,
                     bank_data: str, bank_split: str | None, k: int, save_probabilities: bool,
                     threads: int, code: str) -> dict:
    """Label one image's people into ``out``; returns {item, status}.  Cached on the image's
    content and keypoints, the checkpoint's hash, the bank and the code."""
    synth = _synthesizer(checkpoint, bank_path, bank_data, bank_split, k, save_probabilities, threads)
    people = [PersonRecord(Path(image["image"]), tuple(p["image_size"]), p["person_id"], p["source"],
                           keypoints=None if p["keypoints"] is None else json_to_keypoints(p["keypoints"]),
                           keypoints_derived=None if p["derived"] is None else np.array(p["derived"], bool),
                           split=p["split"]) for p in image["people"]]
    status = synth.process_image(Path(image["image"]), people, Path(out))
    return {"item": item_name(Path(image["image"])), "status": status}


@task(cache_policy=CACHED, persist_result=True)
def finalize_dataset(out: str, checkpoint: str, bank_path: str, bank_data: str, bank_split: str | None,
                     k: int, save_probabilities: bool, threads: int, items: list[dict], code: str) -> dict:
    """people.json, annotations.json (COCO RLE), manifest.parquet, dataset.json from the
    item records; returns totals.  Same Synthesizer key as :func:`synthesize_image`, so a
    thread-runner worker's loaded refiner and bank are reused."""
    synth = _synthesizer(checkpoint, bank_path, bank_data, bank_split, k, save_probabilities, threads)
    return synth.finalize(out)


def task_runner(dask_address: str | None, workers: int):
    """Prefect's thread runner, or prefect-dask's runner on an existing Dask cluster."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=workers)


@flow(name="synthesize-labels", log_prints=True)
def synthesize_labels(checkpoint: str, data: str, out: str, bank_data: str | None = None,
                      bank_split: str | None = "train", k: int = 3, layout: str | None = None,
                      save_probabilities: bool = False, threads_per_task: int = 1) -> dict:
    """Label every keypoint-only person of ``data`` with the refiner at ``checkpoint``.

    Args:
        checkpoint: refiner ``last.pt``; its training data is the bank unless ``bank_data``.
        data: dataset (any supported layout) whose people without label maps get labels.
        out: output dataset folder (partsynth layout; resumable).
        bank_split: the bank's split used for priors (``train`` keeps val people out).
        k: neighbours per prior.
    Returns: totals (images, people labelled, people skipped) and per-status image counts.
    """
    log = get_run_logger()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    bank_data = bank_data or ckpt["bank_data"]
    prior = asdict(synthesis_prior_config(ckpt, k))
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    stale = remove_partial_files(out_path)
    if stale:
        log.info("removed %d partial files of an interrupted run", len(stale))
    code = code_fingerprint()
    images = list_images(data, layout, tree_signature(data))
    bank_path = index_bank(bank_data, bank_split, prior, tree_signature(bank_data), code)
    log.info("%d images with keypoint-only people in %s", len(images), data)
    futures = synthesize_image.map(images, unmapped(out), unmapped(checkpoint), unmapped(file_sha256(checkpoint)),
                                   unmapped(bank_path), unmapped(bank_data), unmapped(bank_split), unmapped(k),
                                   unmapped(save_probabilities), unmapped(threads_per_task), unmapped(code))
    results = []
    for i, f in enumerate(futures, 1):
        results.append(f.result())
        if i % 100 == 0 or i == len(futures):
            log.info("%d/%d images", i, len(futures))
    totals = finalize_dataset(out, checkpoint, bank_path, bank_data, bank_split, k, save_probabilities,
                              threads_per_task, results, code)
    counts = {s: sum(r["status"] == s for r in results) for s in ("images_done", "images_reused", "images_failed")}
    totals = dict(totals, **counts)
    create_table_artifact(key="synthesis-totals", table=[{"quantity": q, "value": v} for q, v in totals.items()],
                          description=f"synthesized labels in {out}")
    log.info("%s: %s", out, totals)
    return totals
