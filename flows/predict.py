"""The ``predict-labels`` flow: a trained parser applied to a folder of photos, one task per
content-defined chunk of photos (:mod:`flows.chunking`), cached across runs.

A rerun with the same photos, checkpoint and options finds every chunk in Prefect's cache
while the photos' files in the output are intact; new photos rerun only their chunks,
where only they are parsed; photos gone from the input lose their files.  Every file is
written atomically, a photo's record last (:class:`parser_net.predict.Predictor`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from prefect import flow, task
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.caching import CACHED, code_fingerprint, retry_on_io
from flows.chunking import content_chunks, prepare_output, run_chunks
from pipeline.formats.files import file_sha256
from pipeline.formats.output_lock import output_lock
from pipeline.formats.predictions import claim_predictions_output, predicted_item_intact, remove_stale_predictions
from pipeline.readers.layouts import list_photos
from parser_net.config import PredictConfig
from parser_net.predict import Predictor, photo_sha256


@functools.lru_cache(maxsize=2)
def _predictor(cfg_json: str) -> Predictor:
    """One Predictor per worker, reused by its tasks."""
    cfg = PredictConfig.model_validate_json(cfg_json)
    torch.set_num_threads(cfg.threads_per_task)
    return Predictor(cfg.checkpoint, scales=cfg.scales, flip=cfg.flip, overlays=cfg.overlays,
                     save_probabilities=cfg.save_probabilities, device=cfg.device, engine=cfg.engine,
                     threads=cfg.threads_per_task, batch_size=cfg.batch_size)


@task(cache_policy=CACHED, persist_result=True, retries=2, retry_condition_fn=retry_on_io)
def predict_chunk(photos: list[str], photo_hashes: list[str], cfg: PredictConfig, checkpoint_sha256: str,
                  code: str, force: bool = False) -> list[str]:
    """Parse a chunk of photos into ``cfg.out``; one status per photo.  Cached on the
    photos' paths and content, the config, the checkpoint's hash and the code."""
    return _predictor(cfg.model_dump_json()).process_images(photos, cfg.out, force=force,
                                                            image_sha256=photo_hashes)


@flow(name="predict-labels", log_prints=True)
def predict_labels(cfg: PredictConfig, force: bool = False) -> dict:
    """Write the parser's label maps (and, as configured, overlays, probabilities and
    keypoints) for every photo of ``cfg.data`` into ``cfg.out``.

    Returns totals: images, images_parsed, images_failed, failed ([photo, reason]), and
    per-status counts (images_done, images_reused) and images_removed.
    Raises: ConfigError when ``cfg.data`` holds no photo, ``cfg.out`` is not ours or
    another run is writing into it;
    CheckpointError when ``cfg.checkpoint`` is not a parser checkpoint."""
    log = get_run_logger()
    claim_predictions_output(cfg.out, cfg.data)
    photos = [str(p) for p in list_photos(cfg.data)]
    predictor = _predictor(cfg.model_dump_json())            # a clear checkpoint error before any work
    with output_lock(cfg.out):
        out = Path(cfg.out)
        removed = prepare_output(out, set(photos), remove_stale_predictions, log, "predictions", cfg.data)
        log.info("%d photos in %s", len(photos), cfg.data)
        sha, code = file_sha256(cfg.checkpoint), code_fingerprint()
        shas = {p: photo_sha256(p) for p in photos}
        chunks = [[photos[i] for i in c] for c in content_chunks(photos, cfg.chunk_size)]
        statuses = run_chunks(
            predict_chunk, chunks,
            lambda chunk: not force and all(predicted_item_intact(out, p, predictor.fingerprint, shas[p]) for p in chunk),
            lambda chunk: (chunk, [shas[p] for p in chunk], cfg, sha, code, force), log, "photos")
        totals = predictor.finalize(out)
        totals.update({s: statuses.count(s) for s in ("images_done", "images_reused")}, images_removed=len(removed))
        for photo, reason in totals["failed"]:
            log.warning("skipped %s: %s", photo, reason)
        log.info("%s: %d photos parsed, %d failed", cfg.out, totals["images_parsed"], totals["images_failed"])
        return totals


def predict_runner(cfg: PredictConfig) -> ThreadPoolTaskRunner:
    """The thread runner of a predict run (``cfg.workers`` tasks at a time)."""
    return ThreadPoolTaskRunner(max_workers=cfg.workers)
