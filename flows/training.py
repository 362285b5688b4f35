"""The ``train-refiner``, ``train-parser`` and ``evaluate`` flows (thin wrappers: take the
run config, call the trainer or evaluator, write the report, publish artifacts)."""
from __future__ import annotations

from prefect import flow, task
from prefect.logging import get_run_logger

from flows.reports import publish_scores, report_dir
from parser_net.config import ParserTrainConfig
from refine_net.config import RefinerTrainConfig


@task(retries=0)
def train_refiner_task(cfg: RefinerTrainConfig) -> str:
    """Train (or resume) the refinement U-Net; returns its ``last.pt``."""
    from refine_net.train import fit_refiner

    return str(fit_refiner(cfg, progress=_every(get_run_logger(), "refiner")))


@flow(name="train-refiner", log_prints=True)
def train_refiner(cfg: RefinerTrainConfig) -> str:
    """Train the refiner on the ``train`` split of ``cfg.data`` (val split scored every
    epoch); resumes from ``cfg.out_dir/last.pt``.  Returns the checkpoint path."""
    return train_refiner_task(cfg)


@task(retries=0)
def train_parser_task(cfg: ParserTrainConfig) -> str:
    """Train (or resume) a parser; returns its ``last.pt`` (scores in ``metrics.json``)."""
    from parser_net.train import fit_parser

    return str(fit_parser(cfg, progress=_every(get_run_logger(), "parser")))


@flow(name="train-parser", log_prints=True)
def train_parser(cfg: ParserTrainConfig) -> str:
    """Train a parser (or, with ``cfg.model="joint"``, the joint parsing + pose network) on
    the real ``cfg.data`` (train split) plus the ``cfg.synthetic`` folders; returns
    ``last.pt`` (val mIoU and, with ``cfg.pose_data``, PCK@0.2 in ``metrics.json``)."""
    return train_parser_task(cfg)


def parsers_runner(n: int):
    """Prefect's process pool of ``n`` processes for :func:`train_parsers`; each process
    ends with the command (:func:`flows.server.die_with_parent`) and reports to its
    Prefect server (Prefect passes the settings on)."""
    from prefect.task_runners import ProcessPoolTaskRunner

    from flows.server import die_with_parent

    return ProcessPoolTaskRunner(max_workers=n, initializer=die_with_parent)


@flow(name="train-parsers", log_prints=True)
def train_parsers(cfgs: dict[str, ParserTrainConfig]) -> dict[str, str]:
    """Train the parsers ``cfgs`` ({name: config}) at once, each in a process of the flow's
    task runner (:func:`parsers_runner`) with its config's ``threads``; returns {name:
    ``last.pt``}.  On a 2-core CPU two parsers with one thread each take about 0.8 s a step
    together where one with two threads takes 0.46 (EfficientNet-Lite0 encoder-decoder,
    batch 8: small convolutions share out poorly over threads), and their data loading
    overlaps."""
    futures = {name: train_parser_task.submit(cfg) for name, cfg in cfgs.items()}
    return {name: f.result() for name, f in futures.items()}


@task
def evaluate_task(checkpoint: str, data: str, split: str | None, scales: list[float], flip: bool,
                  device: str = "auto") -> dict:
    """Scores of one parser checkpoint (JSON-ready) on the labelled images of ``data``."""
    from parser_net.evaluate import evaluate_checkpoint

    scores, n, label_set = evaluate_checkpoint(checkpoint, data, split=split, scales=tuple(scales),
                                               flip=flip, device=device)
    return dict(scores.as_dict(label_set.names), images=n, label_set=label_set.name)


@flow(name="evaluate", log_prints=True)
def evaluate(checkpoints: dict[str, str], data: str, split: str | None = "val", scales: list[float] | None = None,
             flip: bool = False, reports: str = "reports", device: str = "auto") -> dict:
    """Score named parser checkpoints ({name: last.pt}) on ``data``; writes
    ``reports/<run>/`` (metrics.json, table.md, config.json) and publishes a table and a
    markdown artifact.  Returns {name: scores}."""
    rows = {name: evaluate_task(ckpt, data, split, scales or [1.0], flip, device)
            for name, ckpt in checkpoints.items()}
    out = report_dir(reports)
    publish_scores(out, rows, config={"checkpoints": checkpoints, "data": data, "split": split,
                                      "scales": scales or [1.0], "flip": flip, "device": device})
    return rows


def _every(log, what: str, every: int = 100):
    """A progress callback that logs every ``every`` steps (Prefect logs)."""
    def progress(message, done, total):
        if done % every == 0 or done == total:
            log.info("%s: %s (%s/%s)", what, message, done, total)

    return progress
