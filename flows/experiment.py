"""The main job, ``run-experiment``: train the refiner on the labelled set, synthesize labels
for the keypoint-only sets, train a labelled-only and a semi-supervised parser with the same
compute, evaluate both on the labelled set's val split, report."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger

from flows.experiment_config import ExperimentConfig
from flows.reports import publish_scores, report_dir
from flows.synthesis import synthesize_labels, task_runner
from flows.training import evaluate_task, train_parser, train_refiner
from pipeline.files import write_image

@task
def prediction_grid_task(checkpoints: dict[str, str], data: str, out: str, photos: bool, n: int = 6) -> str:
    """PNG grid image | each parser | ground truth for the first ``n`` val images."""
    from parser_net.evaluate import checkpoint_grid

    write_image(out, checkpoint_grid(checkpoints, data, split="val", n=n, photos=photos))
    return out


@flow(name="run-experiment", log_prints=True)
def run_experiment(cfg: ExperimentConfig, dask_address: str | None = None) -> dict:
    """The main job.  ``cfg.work`` holds the refiner, synthesized sets and parsers (each step
    resumes or is served from cache on a rerun); synthesis runs on the Dask scheduler at
    ``dask_address`` when given.  Returns {model: scores}."""
    log = get_run_logger()
    ckpt = train_refiner(cfg.refiner())
    synth_dirs = []
    for data in cfg.keypoint_only:
        synth = cfg.synthesis(ckpt, data)
        synthesize_labels.with_options(task_runner=task_runner(dask_address, cfg.threads))(synth)
        synth_dirs.append(synth.out)
    parsers = {
        "labelled only": train_parser(cfg.parser("parser_labelled")),
        "labelled + synthetic": train_parser(cfg.parser("parser_semi", tuple(synth_dirs))),
    }
    rows = {name: evaluate_task(p, cfg.labelled, "val", [1.0], False, cfg.device) for name, p in parsers.items()}
    out = report_dir(cfg.reports)
    grid = prediction_grid_task(parsers, cfg.labelled, str(out / "predictions_val.png"), cfg.photos_in_grids)
    table = publish_scores(out, rows, config={
        "experiment": cfg.model_dump(mode="json"), "refiner": ckpt, "synthetic": synth_dirs, "parsers": parsers},
        extra_md=f"\nPredictions on val images: `{Path(grid).name}`\n")
    log.info("parsers on the val split of %s:\n%s", cfg.labelled, table)
    return rows
