"""The main job, ``run-experiment``: train the refiner on the labelled set, synthesize labels
for the keypoint-only sets, train a labelled-only and a semi-supervised parser with the same
compute, evaluate both on the labelled set's val split, report."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger

from flows.reports import publish_scores, report_dir
from flows.synthesis import synthesize_labels, task_runner
from flows.training import evaluate_task, train_parser, train_refiner
from pipeline.files import write_image


@dataclass(frozen=True)
class Preset:
    """What ``partsynth run`` trains and tests on, and how long (CPU profile)."""

    labelled: str
    keypoint_only: tuple[str, ...]
    refiner_epochs: int
    parser_iterations: int
    finetune_iterations: int
    photos_in_grids: bool = True
    extra: dict = field(default_factory=dict)


def preset(name: str, data_root: str | None = None) -> Preset:
    """``demo``: the embedded synthetic set (generated when absent), a few minutes on 2
    cores.  ``ccp``: ``DATA_ROOT/ccp`` (labelled people train the refiner and the parsers;
    val is scored) with the keypoint-only people of ``DATA_ROOT/ccp`` and ``DATA_ROOT/lsp``.
    Raises ValueError for another name or a missing ``data_root``."""
    if name == "demo":
        from flows.cli import DEFAULT_DEMO_DIR, ensure_demo

        demo = str(ensure_demo(Path(data_root) if data_root else DEFAULT_DEMO_DIR))
        return Preset(demo, (demo,), refiner_epochs=6, parser_iterations=300, finetune_iterations=100)
    if name == "ccp":
        if not data_root:
            raise ValueError("--preset ccp needs --data-root (the folder holding ccp/ and lsp/)")
        root = Path(data_root)
        for sub in ("ccp", "lsp"):
            if not (root / sub).is_dir():
                raise ValueError(f"{root / sub}: not found (expected the layout of ../shared/data)")
        return Preset(str(root / "ccp"), (str(root / "ccp"), str(root / "lsp")), refiner_epochs=20,
                      parser_iterations=1500, finetune_iterations=500, photos_in_grids=False)
    raise ValueError(f"unknown preset {name!r}; choose demo or ccp")


def profile_sizes(profile: str) -> dict:
    """Refiner and parser sizes of a profile (``cpu`` or ``gpu``), from
    :data:`refine_net.train.PROFILES` and :data:`parser_net.train.PROFILES`."""
    from parser_net.train import PROFILES as PARSER
    from refine_net.train import PROFILES as REFINER

    p = PARSER[profile]
    return {"refiner": dict(REFINER[profile]), "parser": {k: p[k] for k in ("width", "size", "blocks")}}


@task
def prediction_grid_task(checkpoints: dict[str, str], data: str, out: str, photos: bool, n: int = 6) -> str:
    """PNG grid image | each parser | ground truth for the first ``n`` val images."""
    from parser_net.evaluate import checkpoint_grid

    write_image(out, checkpoint_grid(checkpoints, data, split="val", n=n, photos=photos))
    return out


@flow(name="run-experiment", log_prints=True)
def run_experiment(labelled: str, keypoint_only: list[str], work: str, refiner_epochs: int = 20,
                   parser_iterations: int = 1500, finetune_iterations: int = 500, threads: int = 2,
                   photos_in_grids: bool = True, reports: str = "reports", dask_address: str | None = None,
                   profile: str = "cpu") -> dict:
    """The main job.  ``work`` holds the refiner, synthesized sets and parsers (each step
    resumes or is served from cache on a rerun).  Returns {model: scores}."""
    log = get_run_logger()
    work_path = Path(work)
    sizes = profile_sizes(profile)
    ckpt = train_refiner(labelled, str(work_path / "refiner"), epochs=refiner_epochs, loss="ce", threads=threads,
                         **sizes["refiner"])
    synth_dirs = []
    for data in keypoint_only:
        out = str(work_path / "synth" / Path(data).name)
        synthesize_labels.with_options(task_runner=task_runner(dask_address, threads))(
            ckpt, data, out, bank_split="train", threads_per_task=1)
        synth_dirs.append(out)
    common = dict(iterations=parser_iterations, threads=threads, **sizes["parser"])
    parsers = {
        "labelled only": train_parser(labelled, str(work_path / "parser_labelled"), **common),
        "labelled + synthetic": train_parser(labelled, str(work_path / "parser_semi"), synthetic=synth_dirs,
                                             finetune_iterations=finetune_iterations, **common),
    }
    rows = {name: evaluate_task(p, labelled, "val", [1.0], False) for name, p in parsers.items()}
    out = report_dir(reports)
    grid = prediction_grid_task(parsers, labelled, str(out / "predictions_val.png"), photos_in_grids)
    table = publish_scores(out, rows, config={
        "labelled": labelled, "keypoint_only": keypoint_only, "work": work, "refiner": ckpt,
        "synthetic": synth_dirs, "parsers": parsers, "refiner_epochs": refiner_epochs,
        "parser_iterations": parser_iterations, "finetune_iterations": finetune_iterations},
        extra_md=f"\nPredictions on val images: `{Path(grid).name}`\n")
    log.info("parsers on the val split of %s:\n%s", labelled, table)
    return rows
