"""The main job, ``run-experiment``: train the refiner on the labelled set (or, for body parts,
use the partition labeller), synthesize labels for the keypoint-only sets (and for the val
people as if keypoint-only, scored against their ground truth), train a labelled-only and a
semi-supervised parser with the same compute, evaluate both on the labelled set's val split
(or the eval set), report with a one-line verdict."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger

from flows.experiment_config import ExperimentConfig
from flows.keypoints import estimate_keypoints, keypoints_runner
from flows.reports import (labelled_people_line, payoff_verdict, publish_scores, refiner_line, report_dir,
                           synthesis_score_line)
from flows.synthesis import synthesize_labels, task_runner
from flows.training import evaluate_task, parsers_runner, train_parser, train_parsers, train_refiner
from pipeline.formats.files import write_image
from pipeline.formats.output_lock import output_lock
from refine_net.device import resolve_device


@task
def prediction_grid_task(checkpoints: dict[str, str], data: str, out: str, photos: bool, n: int = 6,
                         split: str | None = "val") -> str:
    """PNG grid image | each parser | ground truth for the first ``n`` images of ``split``."""
    from parser_net.evaluate import checkpoint_grid

    write_image(out, checkpoint_grid(checkpoints, data, split=split, n=n, photos=photos))
    return out


@task
def synthesis_grid_task(synth_dir: str, out: str, photos: bool, n: int = 12) -> str | None:
    """PNG grid of ``n`` people of a synthesized set (spread over it in its order): crop with
    keypoints | synthetic label overlay (:func:`pipeline.pictures.dataset_grid.people_grid`);
    None (nothing written) when it labelled nobody."""
    from pipeline.pictures.dataset_grid import people_grid
    from pipeline.readers.layouts import iter_records

    recs = [r for r in iter_records(synth_dir, skip_bad=True) if r.label_map is not None and r.keypoints is not None]
    if not recs:
        return None
    step = max(1, len(recs) // n)
    write_image(out, people_grid(recs[::step][:n], photos=photos))
    return out


def eval_name(cfg: ExperimentConfig) -> str:
    """'the val split of LABELLED' or 'EVAL_DATA': where the main job scores its parsers."""
    data, split = cfg.eval_set()
    return f"the {split} split of {data}" if split else data


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
    (its epochs and val mIoU against its prior's; None with the partition labeller),
    ``verdict`` (one line: do synthetic people help the parser?) and ``synthetic_people``
    ({synthesized set: people labelled and skipped}).
    Raises ConfigError when another main job holds ``cfg.work``
    (:func:`pipeline.formats.output_lock.output_lock`)."""
    log = get_run_logger()
    with output_lock(cfg.work):                          # one main job per run folder
        if cfg.raw_photos_from:
            link_photos_task(cfg.raw_photos_from, cfg.raw_photos())
        ckpt = train_refiner(cfg.refiner()) if cfg.labeller == "refiner" else None
        for kp in cfg.keypoint_runs():                       # person masks first, when synthesis clips to them
            estimate_keypoints.with_options(task_runner=keypoints_runner(kp))(kp)
        synthesize = synthesize_labels.with_options(task_runner=task_runner(dask_address, cfg.threads))
        synth_scores = None
        if cfg.score_synthesis:
            check = cfg.synthesis_check(ckpt)
            synthesize(check)
            synth_scores = score_synthesis_task(check.out, cfg.labelled)
        synth_dirs, labelled_people = [], {}
        for data in cfg.keypoint_only:
            synth = cfg.synthesis(ckpt, data)
            totals = synthesize(synth)
            labelled_people[Path(synth.out).name] = {k: totals[k] for k in ("people_labelled", "people_skipped")}
            if cfg.trains_parser(data):
                synth_dirs.append(synth.out)
        on_cpu = resolve_device(cfg.device).type == "cpu"
        parser_cfgs = cfg.parsers(tuple(synth_dirs), on_cpu)
        if cfg.parsers_train_at_once(on_cpu):
            parsers = train_parsers.with_options(task_runner=parsers_runner(len(parser_cfgs)))(parser_cfgs)
        else:
            parsers = {name: train_parser(c) for name, c in parser_cfgs.items()}
        eval_data, eval_split = cfg.eval_set()
        rows = {name: evaluate_task(p, eval_data, eval_split, [1.0], False, cfg.device) for name, p in parsers.items()}
        out = report_dir(cfg.reports)
        grid = prediction_grid_task(parsers, eval_data, str(out / f"predictions_{eval_split or 'eval'}.png"),
                                    cfg.photos_in_grids, split=eval_split)
        grids = [synthesis_grid_task(d, str(out / f"synthetic_{Path(d).stem}.png"), cfg.photos_in_grids)
                 for d in synth_dirs] if cfg.labeller == "partition" else []
        verdict = payoff_verdict(rows)
        refiner = refiner_summary_task(str(Path(ckpt).parent)) if ckpt else None
        summary = "".join(f"\n{line}\n" for line in (
            refiner_line(refiner) if refiner else "", synthesis_score_line(synth_scores) if synth_scores else "",
            labelled_people_line(labelled_people, cfg.labeller)) if line)
        table = publish_scores(out, rows, config={
            "experiment": cfg.model_dump(mode="json"), "refiner": ckpt, "synthetic": synth_dirs, "parsers": parsers,
            "synthetic_labels_val": synth_scores, "refiner_training": refiner, "synthetic_people": labelled_people},
            extra_md=f"\n{verdict}\n{summary}\nPredictions on {eval_split or 'eval'} images: `{Path(grid).name}`\n"
                     + "".join(f"Synthetic labels: `{Path(g).name}`\n" for g in grids if g))
        log.info("parsers on %s:\n%s\n%s%s", eval_name(cfg), table, verdict, summary)
        return {"parsers": rows, "synthetic_labels": synth_scores, "refiner": refiner, "verdict": verdict,
                "synthetic_people": labelled_people}
