"""The ``estimate-keypoints`` flow: BlazePose keypoints and person masks for a folder of
photos, one task per content-defined chunk of photos (:mod:`flows.chunking`), cached
across runs and resumable: every mask is written atomically and a photo's record last
(:mod:`pipeline.formats.estimated_poses`)."""
from __future__ import annotations

import functools
from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.caching import CACHED, code_fingerprint, retry_on_io
from flows.chunking import content_chunks, prepare_output, run_chunks
from pipeline.blazepose import BlazePose
from pipeline.formats.estimated_poses import (claim_keypoints_output, estimate_photos, estimated_item_intact,
                                      estimator_fingerprint, finalize_keypoints, remove_stale_estimates)
from pipeline.formats.files import file_sha256
from pipeline.keypoints_config import KeypointsConfig
from pipeline.formats.output_lock import output_lock
from pipeline.person_boxes import read_person_boxes
from pipeline.readers.layouts import list_photos


@functools.lru_cache(maxsize=2)
def _estimator(model_complexity: int, min_detection_confidence: float, box_padding: float, graphs: int) -> BlazePose:
    """One BlazePose per option set, shared by the tasks of every run (``graphs`` at a time)."""
    return BlazePose(model_complexity, min_detection_confidence, box_padding, max_graphs=graphs)


def estimator_of(cfg: KeypointsConfig) -> BlazePose:
    """The BlazePose of ``cfg`` (ConfigError for a model that would download or a missing mediapipe)."""
    return _estimator(cfg.model_complexity, cfg.min_detection_confidence, cfg.box_padding, cfg.workers)


@task(cache_policy=CACHED, persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def estimate_chunk(photos: list[str], photo_hashes: list[str], fingerprints: list[str], boxes: list | None,
                   cfg: KeypointsConfig, code: str, force: bool = False) -> list[str]:
    """Estimate a chunk of photos into ``cfg.out``; one status per photo.  Cached on the
    photos' paths, content and boxes (in ``fingerprints``), the config and the code."""
    return estimate_photos(estimator_of(cfg), photos, cfg.out, fingerprints, photo_hashes, boxes, force=force)


@flow(name="estimate-keypoints", log_prints=True)
def estimate_keypoints(cfg: KeypointsConfig, force: bool = False) -> dict:
    """Write BlazePose keypoints and person masks of every photo of ``cfg.data`` into
    ``cfg.out`` (a keypoint-only partsynth dataset).

    Returns totals: images, people, images_failed, misses (boxes without a person),
    failed ([photo, reason]), per-status counts (images_done, images_reused) and
    images_removed.
    Raises: ConfigError when ``cfg.data`` holds no photo, ``cfg.out`` is not ours or
    another run is writing into it, or
    mediapipe is missing or asked for a model it does not bundle; DataError for a bad
    boxes file."""
    log = get_run_logger()
    claim_keypoints_output(cfg.out, cfg.data)
    estimator_of(cfg)                                     # a clear mediapipe error before any work
    with output_lock(cfg.out):
        photos = [str(p) for p in list_photos(cfg.data)]
        boxes = read_person_boxes(cfg.boxes, photos, cfg.min_box_score) if cfg.boxes else None
        out = Path(cfg.out)
        removed = prepare_output(out, set(photos), remove_stale_estimates, log, "keypoints", cfg.data)
        log.info("%d photos in %s%s", len(photos), cfg.data,
                 "" if boxes is None else f", {sum(map(len, boxes.values()))} person boxes from {cfg.boxes}")
        options, code = cfg.estimator_options(), code_fingerprint()
        shas = {p: file_sha256(p) for p in photos}
        fps = {p: estimator_fingerprint(options, None if boxes is None else boxes[p]) for p in photos}
        chunks = [[photos[i] for i in c] for c in content_chunks(photos, cfg.chunk_size)]
        statuses = run_chunks(
            estimate_chunk, chunks,
            lambda chunk: not force and all(estimated_item_intact(out, p, fps[p], shas[p]) for p in chunk),
            lambda chunk: (chunk, [shas[p] for p in chunk], [fps[p] for p in chunk],
                           None if boxes is None else [boxes[p] for p in chunk], cfg, code, force), log, "photos")
        totals = finalize_keypoints(out, options, estimator_fingerprint(options, cfg.boxes and file_sha256(cfg.boxes)))
        totals.update({s: statuses.count(s) for s in ("images_done", "images_reused")}, images_removed=len(removed))
        for photo, reason in totals["failed"]:
            log.warning("skipped %s: %s", photo, reason)
        log.info("%s: %d people in %d photos, %d photos skipped", cfg.out, totals["people"], totals["images"],
                 totals["images_failed"])
        return totals


def keypoints_runner(cfg: KeypointsConfig) -> ThreadPoolTaskRunner:
    """The thread runner of a keypoints run (``cfg.workers`` tasks at a time)."""
    return ThreadPoolTaskRunner(max_workers=cfg.workers)
