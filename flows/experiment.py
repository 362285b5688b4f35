"""The main job, ``run-experiment``: train the refiner on the labelled set, synthesize labels
for the keypoint-only sets (and for the val people as if keypoint-only, scored against their
ground truth), train a labelled-only and a semi-supervised parser with the same compute,
evaluate both on the labelled set's val split, report with a one-line verdict."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger

from flows.experiment_config import ExperimentConfig
from flows.keypoints import estimate_keypoints, keypoints_runner
from flows.reports import payoff_verdict, publish_scores, refiner_line, report_dir, synthesis_score_line
from flows.synthesis import synthesize_labels, task_runner
from flows.training import evaluate_task, parsers_runner, train_parser, train_parsers, train_refiner
from pipeline.formats.files import write_image
from pipeline.formats.output_lock import output_lock
from refine_net.device import resolve_device


@task
def prediction_grid_task(checkpoints: dict[str, str], data: str, out: str, photos: bool, n: int = 6) -> str:
    """PNG grid image | each parser | ground truth for the first ``n`` val images."""
    from parser_net.evaluate import checkpoint_grid

    write_image(out, checkpoint_grid(checkpoints, data, split="val", n=n, photos=photos))
    return out


@task
def link_photos_task(data: str, folder: str) -> int:
    """Link ``data``'s photos without pixel labels into ``folder`` (raw photos); returns how many."""
    from pipeline.readers.layouts import link_unlabelled_photos

    n = len(link_unlabelled_photos(data, folder))
    get_run_logger().info("%d photos of %s without labels linked into %s as raw photos", n, data, folder)
    return n


@task
def score_synthesis_task(synth_dir: str, truth: str) -> dict:
    """Scores of a synthesized set against the val ground truth of ``truth`` (JSON-ready)."""
    from pipeline.synth_score import score_synthesis

    return score_synthesis(synth_dir, truth, "val")


@task
def refiner_summary_task(run_dir: str) -> dict:
    """The refiner run's epochs and val mIoU against its prior's
    (:func:`refine_net.train.training_summary`)."""
    from refine_net.train import training_summary

    return training_summary(run_dir)


@flow(name="run-experiment", log_prints=True)
def run_experiment(cfg: ExperimentConfig, dask_address: str | None = None) -> dict:
    """The main job.  ``cfg.work`` holds the refiner, synthesized sets and parsers (each step
    resumes or is served from cache on a rerun); synthesis runs on the Dask scheduler at
    ``dask_address`` when given.  Returns ``parsers`` ({model: scores}),
    ``synthetic_labels`` (scores of the val people's synthetic labels, or None), ``refiner``
    (its epochs and val mIoU against its prior's) and
    ``verdict`` (one line: do synthetic people help the parser?).
    Raises ConfigError when another main job holds ``cfg.work``
    (:func:`pipeline.formats.output_lock.output_lock`)."""
    log = get_run_logger()
    with output_lock(cfg.work):                          # one main job per run folder
        if cfg.raw_photos_from:
            link_photos_task(cfg.raw_photos_from, cfg.raw_photos())
        ckpt = train_refiner(cfg.refiner())
        for kp in cfg.keypoint_runs():                       # person masks first, when synthesis clips to them
            estimate_keypoints.with_options(task_runner=keypoints_runner(kp))(kp)
        synthesize = synthesize_labels.with_options(task_runner=task_runner(dask_address, cfg.threads))
        synth_scores = None
        if cfg.score_synthesis:
            check = cfg.synthesis_check(ckpt)
            synthesize(check)
            synth_scores = score_synthesis_task(check.out, cfg.labelled)
        synth_dirs = []
        for data in cfg.keypoint_only:
            synth = cfg.synthesis(ckpt, data)
            synthesize(synth)
            if cfg.trains_parser(data):
                synth_dirs.append(synth.out)
        on_cpu = resolve_device(cfg.device).type == "cpu"
        parser_cfgs = cfg.parsers(tuple(synth_dirs), on_cpu)
        if cfg.parsers_train_at_once(on_cpu):
            parsers = train_parsers.with_options(task_runner=parsers_runner(len(parser_cfgs)))(parser_cfgs)
        else:
            parsers = {name: train_parser(c) for name, c in parser_cfgs.items()}
        rows = {name: evaluate_task(p, cfg.labelled, "val", [1.0], False, cfg.device) for name, p in parsers.items()}
        out = report_dir(cfg.reports)
        grid = prediction_grid_task(parsers, cfg.labelled, str(out / "predictions_val.png"), cfg.photos_in_grids)
        verdict = payoff_verdict(rows)
        refiner = refiner_summary_task(str(Path(ckpt).parent))
        summary = "".join(f"\n{line}\n" for line in (
            refiner_line(refiner), synthesis_score_line(synth_scores) if synth_scores else "") if line)
        table = publish_scores(out, rows, config={
            "experiment": cfg.model_dump(mode="json"), "refiner": ckpt, "synthetic": synth_dirs, "parsers": parsers,
            "synthetic_labels_val": synth_scores, "refiner_training": refiner},
            extra_md=f"\n{verdict}\n{summary}\nPredictions on val images: `{Path(grid).name}`\n")
        log.info("parsers on the val split of %s:\n%s\n%s%s", cfg.labelled, table, verdict, summary)
        return {"parsers": rows, "synthetic_labels": synth_scores, "refiner": refiner, "verdict": verdict}
