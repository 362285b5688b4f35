"""The ``train-refiner``, ``train-parser`` and ``evaluate`` flows (thin wrappers: build the
config, call the trainer or evaluator, write the report, publish artifacts)."""
from __future__ import annotations

from prefect import flow, task
from prefect.logging import get_run_logger

from flows.reports import publish_scores, report_dir


@task(retries=0)
def train_refiner_task(cfg: dict) -> str:
    """Train (or resume) the refinement U-Net; returns its ``last.pt``."""
    from refine_net.train import TrainConfig, main

    log = get_run_logger()
    return str(main(TrainConfig(**cfg), progress=_every(log, "refiner")))


@flow(name="train-refiner", log_prints=True)
def train_refiner(data: str, out: str, epochs: int = 20, loss: str = "ce", use_prior: bool = True,
                  size: int = 128, base_filters: int = 32, depth: int = 5, seed: int = 0,
                  max_minutes: float | None = None, threads: int | None = None) -> str:
    """Train the refiner on the ``train`` split of ``data`` (val split scored every epoch);
    resumes from ``out/last.pt``.  Returns the checkpoint path."""
    return train_refiner_task(dict(data=data, out_dir=out, epochs=epochs, loss=loss, use_prior=use_prior,
                                   size=size, base_filters=base_filters, depth=depth, seed=seed,
                                   max_minutes=max_minutes, threads=threads))


@task(retries=0)
def train_parser_task(cfg: dict) -> str:
    """Train (or resume) a parser; returns its ``last.pt`` (scores in ``metrics.json``)."""
    from parser_net.train import ParserTrainConfig, main

    cfg = dict(cfg, synthetic=tuple(cfg["synthetic"]), blocks=tuple(cfg["blocks"]))
    return str(main(ParserTrainConfig(**cfg), progress=_every(get_run_logger(), "parser")))


@flow(name="train-parser", log_prints=True)
def train_parser(data: str, out: str, synthetic: list[str] | None = None, n_real: int | None = None,
                 n_synthetic: int | None = None, iterations: int = 1500, finetune_iterations: int = 0,
                 arch: str = "deeplab", width: int = 16, size: int = 160, blocks: tuple[int, int, int, int] = (1, 1, 1, 1),
                 min_confidence: float = 0.0,
                 real_fraction: float | None = 0.5, synthetic_weight: float = 1.0, seed: int = 0,
                 threads: int | None = None, model: str = "parser", structure_loss: bool = False,
                 pose_data: str | None = None, pose_split: str = "test") -> str:
    """Train a parser (or, with ``model="joint"``, the joint parsing + pose network) on the
    real ``data`` (train split) plus the ``synthetic`` folders; returns ``last.pt`` (val
    mIoU and, with ``pose_data``, PCK@0.2 in ``metrics.json``).  See
    :class:`parser_net.train.ParserTrainConfig` for the fields."""
    return train_parser_task(dict(
        data=data, out_dir=out, synthetic=list(synthetic or []), n_real=n_real, n_synthetic=n_synthetic,
        iterations=iterations, finetune_iterations=finetune_iterations if synthetic else 0, arch=arch,
        width=width, blocks=tuple(blocks), size=size, min_confidence=min_confidence, real_fraction=real_fraction,
        synthetic_weight=synthetic_weight, seed=seed, subset_seed=seed, threads=threads, model=model,
        structure_loss=structure_loss, pose_data=pose_data, pose_split=pose_split))


@task
def evaluate_task(checkpoint: str, data: str, split: str | None, scales: list[float], flip: bool) -> dict:
    """Scores of one parser checkpoint (JSON-ready) on the labelled images of ``data``."""
    from parser_net.evaluate import evaluate_checkpoint

    scores, n, label_set = evaluate_checkpoint(checkpoint, data, split=split, scales=tuple(scales),
                                               flip=flip)
    return dict(scores.as_dict(label_set.names), images=n, label_set=label_set.name)


@flow(name="evaluate", log_prints=True)
def evaluate(checkpoints: dict[str, str], data: str, split: str | None = "val", scales: list[float] | None = None,
             flip: bool = False, reports: str = "reports") -> dict:
    """Score named parser checkpoints ({name: last.pt}) on ``data``; writes
    ``reports/<run>/`` (metrics.json, table.md, config.json) and publishes a table and a
    markdown artifact.  Returns {name: scores}."""
    rows = {name: evaluate_task(ckpt, data, split, scales or [1.0], flip) for name, ckpt in checkpoints.items()}
    out = report_dir(reports)
    publish_scores(out, rows, config={"checkpoints": checkpoints, "data": data, "split": split,
                                      "scales": scales or [1.0], "flip": flip})
    return rows


def _every(log, what: str, every: int = 100):
    """A progress callback that logs every ``every`` steps (Prefect logs)."""
    def progress(message, done, total):
        if done % every == 0 or done == total:
            log.info("%s: %s (%s/%s)", what, message, done, total)

    return progress

