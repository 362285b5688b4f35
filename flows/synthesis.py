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
from prefect.artifacts import create_table_artifact
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.caching import CACHED, cache_dir, code_fingerprint, retry_on_io
from pipeline.files import atomic_path, file_sha256, tree_signature
from pipeline.layouts import keypoint_only_people
from pipeline.priors.bank import PriorConfig, bank_from_dataset
from pipeline.readers.folder import json_to_keypoints, keypoints_to_json
from pipeline.records import PersonRecord, ReadReport
from pipeline.synth_dataset import item_name, remove_partial_files
from refine_net.checkpoint import load_checkpoint
from refine_net.config import SynthConfig
from refine_net.synthesize import Synthesizer, bank_data_of, synthesis_prior_config


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
        log = get_run_logger()
        log.warning("%s: %s", data, report.summary())
        for file, problem in report.skipped:
            log.warning("skipped %s: %s", file, problem)
    return list(by_image.values())


@task(cache_policy=CACHED, persist_result=True)
def index_bank(bank_data: str, bank_split: str | None, prior: dict, label_set: str, signature: str,
               code: str) -> str:
    """Build the prior bank (pose index + part patches) in the refiner's ``label_set`` and
    pickle it in the cache folder; returns the file.  Cached on the bank's files
    (``signature``), split, prior config, label set and code."""
    bank = bank_from_dataset(bank_data, bank_split, PriorConfig(**prior), label_set=label_set)
    key = hashlib.sha256(json.dumps([bank_data, bank_split, prior, label_set, signature, code],
                                    sort_keys=True).encode())
    path = cache_dir() / f"bank-{key.hexdigest()[:20]}.pkl"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(bank, f, protocol=pickle.HIGHEST_PROTOCOL)
    get_run_logger().info("bank of %d exemplars from %s (%s) -> %s", len(bank.exemplars), bank_data,
                          bank_split or "all splits", path)
    return str(path)


def bank_for(cfg: SynthConfig) -> str:
    """The cached prior bank file of a synthesis run (built on first use)."""
    ckpt = load_checkpoint(cfg.checkpoint, kind="refiner")
    bank_data = bank_data_of(cfg, ckpt)
    return index_bank(bank_data, cfg.bank_split, asdict(synthesis_prior_config(ckpt, cfg.k)), ckpt.label_set,
                      tree_signature(bank_data), code_fingerprint())


@functools.lru_cache(maxsize=2)
def _synthesizer(cfg_json: str, bank_path: str) -> Synthesizer:
    """One Synthesizer per worker (thread pool or Dask process), reused by its tasks."""
    cfg = SynthConfig.model_validate_json(cfg_json)
    torch.set_num_threads(cfg.threads_per_task)
    with open(bank_path, "rb") as f:
        bank = pickle.load(f)
    return Synthesizer(cfg, bank)


@task(cache_policy=CACHED, persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def synthesize_image(image: dict, cfg: SynthConfig, checkpoint_sha256: str, bank_path: str, code: str) -> dict:
    """Label one image's people into ``cfg.out``; returns {item, status}.  Cached on the
    image's content and keypoints, the run config, the checkpoint's hash, the bank and the
    code."""
    synth = _synthesizer(cfg.model_dump_json(), bank_path)
    people = [PersonRecord(Path(image["image"]), tuple(p["image_size"]), p["person_id"], p["source"],
                           keypoints=None if p["keypoints"] is None else json_to_keypoints(p["keypoints"]),
                           keypoints_derived=None if p["derived"] is None else np.array(p["derived"], bool),
                           split=p["split"]) for p in image["people"]]
    status = synth.process_image(Path(image["image"]), people, Path(cfg.out))
    return {"item": item_name(Path(image["image"])), "status": status}


@task(cache_policy=CACHED, persist_result=True)
def finalize_dataset(cfg: SynthConfig, bank_path: str, items: list[dict], code: str) -> dict:
    """people.json, annotations.json (COCO RLE), manifest.parquet, dataset.json from the
    item records; returns totals.  Same Synthesizer key as :func:`synthesize_image`, so a
    thread-runner worker's loaded refiner and bank are reused."""
    return _synthesizer(cfg.model_dump_json(), bank_path).finalize(cfg.out)


def task_runner(dask_address: str | None, workers: int):
    """Prefect's thread runner, or prefect-dask's runner on an existing Dask cluster."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=workers)


@flow(name="synthesize-labels", log_prints=True)
def synthesize_labels(cfg: SynthConfig) -> dict:
    """Label every keypoint-only person of ``cfg.data`` with the refiner at
    ``cfg.checkpoint`` into ``cfg.out`` (see :class:`refine_net.config.SynthConfig`).

    Returns: totals (images, people labelled, people skipped) and per-status image counts.
    Raises: CheckpointError when ``cfg.checkpoint`` is not a refiner checkpoint."""
    log = get_run_logger()
    out_path = Path(cfg.out)
    out_path.mkdir(parents=True, exist_ok=True)
    stale = remove_partial_files(out_path)
    if stale:
        log.info("removed %d partial files of an interrupted run", len(stale))
    code = code_fingerprint()
    images = list_images(cfg.data, cfg.layout, tree_signature(cfg.data))
    bank_path = bank_for(cfg)
    log.info("%d images with keypoint-only people in %s", len(images), cfg.data)
    futures = synthesize_image.map(images, unmapped(cfg), unmapped(file_sha256(cfg.checkpoint)),
                                   unmapped(bank_path), unmapped(code))
    results = []
    for i, f in enumerate(futures, 1):
        results.append(f.result())
        if i % 100 == 0 or i == len(futures):
            log.info("%d/%d images", i, len(futures))
    totals = finalize_dataset(cfg, bank_path, results, code)
    counts = {s: sum(r["status"] == s for r in results) for s in ("images_done", "images_reused", "images_failed")}
    totals = dict(totals, **counts)
    create_table_artifact(key="synthesis-totals", table=[{"quantity": q, "value": v} for q, v in totals.items()],
                          description=f"synthesized labels in {cfg.out}")
    log.info("%s: %s", cfg.out, totals)
    return totals
