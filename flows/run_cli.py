"""``partsynth run``, ``synthesize``, ``inspect`` and ``schedule``: the Prefect flows from the
command line."""
from __future__ import annotations

import sys
from pathlib import Path

from flows.experiment_config import ExperimentConfig
from flows.options import add_config_options, config_from_args, interrupted, validate_config, with_item_progress
from flows.server import temporary_server
from pipeline.errors import ConfigError
from pipeline.formats.item_folder import item_files
from pipeline.formats.synth_dataset import skip_summary
from refine_net.config import SynthConfig


def experiment_config(args) -> ExperimentConfig:
    """The main job's config: the preset's values, then ``--config``, then the flags."""
    from flows.experiment_config import preset_values

    base = preset_values(args.preset, args.data_root and str(args.data_root))
    return config_from_args(ExperimentConfig, args, base)


def cmd_run(args) -> int:
    import resource
    import time

    from flows.experiment import eval_name, run_experiment
    from flows.reports import labelled_people_line, refiner_line, synthesis_score_line
    from parser_net.evaluate import scores_markdown

    cfg = experiment_config(args)
    if cfg.person_masks or cfg.raw_photos_from:          # BlazePose is needed: say so before hours of work
        from pipeline.blazepose import mediapipe_pose

        hint = "" if cfg.raw_photos_from else " (or pass --no-person-masks)"
        mediapipe_pose(f"this run estimates keypoints or person masks ({args.preset} preset){hint}")
    t = time.time()
    with temporary_server():
        result = run_experiment(cfg, dask_address=args.dask_address)
    print(f"\nparsers on {eval_name(cfg)} ({args.preset} preset, {cfg.profile} profile):\n")
    print(scores_markdown(result["parsers"]))
    print(result["verdict"])
    refiner = refiner_line(result["refiner"]) if result["refiner"] else ""
    if refiner:
        print(refiner)
    print(labelled_people_line(result["synthetic_people"], cfg.labeller))
    if result["synthetic_labels"] is not None:
        print(synthesis_score_line(result["synthetic_labels"]))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"wall time {time.time() - t:.0f} s, peak memory {peak_gib:.2f} GiB; reports in {cfg.reports}/")
    return 0


def cmd_synthesize(args) -> int:
    cfg = config_from_args(SynthConfig, args)             # a bad option fails before the heavy imports
    from flows.synthesis import synthesize_labels, task_runner
    from pipeline.readers.layouts import is_photo_folder
    from pipeline.readers.layouts import list_photos
    from pipeline.formats.synth_dataset import claim_output
    from refine_net.checkpoint import load_checkpoint

    claim_output(cfg.out, cfg.data, records=False)        # clear errors before starting Prefect (its records: the flow)
    if cfg.checkpoint is not None:
        load_checkpoint(cfg.checkpoint, kind="refiner")
    out = Path(cfg.out)
    if is_photo_folder(cfg.data, cfg.layout):           # keypoints first (BlazePose), into OUT/keypoints
        from pipeline.blazepose import mediapipe_pose

        mediapipe_pose(f"{cfg.data} is a folder of photos without keypoints")
        total = len(list_photos(cfg.data))
    else:                                               # the flow reads the data once and tells how many
        from flows.synthesis import LISTED_IMAGES

        def total() -> int | None:
            return LISTED_IMAGES.get(str(out.resolve()))

    def run():
        flow = synthesize_labels.with_options(task_runner=task_runner(args.dask_address, args.workers))
        with temporary_server():
            return flow(cfg, force=args.force)

    try:
        totals = with_item_progress("synthesizing", total, out, run)
    except KeyboardInterrupt:
        done_items, of = len(item_files(out)), total() if callable(total) else total
        interrupted(f"interrupted; {done_items} of {of if of is not None else '?'} images done in {cfg.out}: "
                    "rerun to resume")
    print(f"{cfg.out}: {totals}")
    skipped = skip_summary(cfg.out)
    for reason, (n, example) in skipped.items():
        print(f"  skipped {example}: {reason}" + (f"  (and {n - 1} more like it)" if n > 1 else ""))
    if skipped and args.strict:
        print(f"error: {sum(n for n, _ in skipped.values())} people skipped (--strict)", file=sys.stderr)
        return 1
    return 0


def cmd_inspect(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from pipeline.formats.folder import read_dataset_info

    read_dataset_info(args.dataset)          # a clear error before importing and starting Prefect
    from flows.inspect import inspect_dataset

    with temporary_server():
        stats = inspect_dataset(str(args.dataset), args.out and str(args.out), priors=not args.no_priors,
                                max_people=args.max_people)
    console = Console()
    t = Table(title=f"{args.dataset}: {stats['people']} people ({stats['label_set']})")
    t.add_column("class")
    t.add_column("pixel share", justify="right")
    for name, share in stats["class_pixel_share"].items():
        t.add_row(name, f"{100 * share:.2f}%")
    console.print(t)
    console.print(f"people per source: {stats['people_per_source']}")
    console.print("refiner confidence (mean max-probability) quantiles: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in stats["confidence_quantiles"].items()))
    console.print(f"histogram: {stats['confidence_histogram']}")
    console.print("lowest confidence:")
    for p in stats["lowest_confidence"]:
        console.print(f"  {p['person_id']:>12}  {p['mean_max_prob']:.3f}  {p['image']}", markup=False)
    console.print(f"page: {stats['page']} (open it in a browser; no server needed)")
    return 0


def cmd_schedule(args) -> int:
    """Serve the synthesis and/or experiment flows on a schedule against a running server."""
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    from flows.experiment import run_experiment
    from flows.synthesis import synthesize_labels

    if not PREFECT_API_URL.value():
        raise ConfigError("no Prefect server: start one with `prefect server start` and set "
                          "PREFECT_API_URL=http://127.0.0.1:4200/api")
    when = {"cron": args.cron} if args.cron else {"interval": args.interval}
    deployments = []
    if args.data:
        if not (args.checkpoint and args.out):
            raise ConfigError("scheduling synthesis needs --checkpoint, --data and --out")
        cfg = validate_config(SynthConfig, {"checkpoint": str(Path(args.checkpoint).resolve()),
                                            "data": str(Path(args.data).resolve()),
                                            "out": str(Path(args.out).resolve()), "bank_split": args.bank_split})
        deployments.append(synthesize_labels.to_deployment(name=args.name or "synthesize", **when,
                                                           parameters={"cfg": cfg.model_dump(mode="json")}))
    if args.preset:
        from flows.experiment_config import preset_values

        values = preset_values(args.preset, args.data_root and str(args.data_root))
        values["work"] = str(Path(args.work or values["work"]).resolve())
        cfg = validate_config(ExperimentConfig, values)
        deployments.append(run_experiment.to_deployment(name=f"{args.name or 'experiment'}-{args.preset}", **when,
                                                        parameters={"cfg": cfg.model_dump(mode="json")}))
    if not deployments:
        raise ConfigError("nothing to schedule: give --data/--checkpoint/--out (synthesis) and/or --preset "
                          "(experiment)")
    print(f"serving {', '.join(d.name for d in deployments)} ({when}); Ctrl-C stops")
    serve(*deployments)
    return 0


def add_run_commands(sub) -> None:
    r = sub.add_parser("run", help="the main job: refiner -> synthetic labels -> parsers -> report")
    r.add_argument("--preset", choices=["demo", "ccp", "ccp-photos", "bodyparts"], default="demo")
    r.add_argument("--data-root", type=Path, help="for --preset ccp, ccp-photos and bodyparts: the folder holding "
                                                        "ccp/ and lsp/ (and viton/, mmpose/, pascal_part/)")
    r.add_argument("--dask-address", help="tcp://HOST:PORT of a Dask scheduler for synthesis")
    add_config_options(r, ExperimentConfig)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("synthesize", help="label the keypoint-only people of a dataset (Prefect flow)")
    add_config_options(s, SynthConfig)
    s.add_argument("--workers", type=int, default=2, help="thread-runner workers")
    s.add_argument("--force", action="store_true", help="recompute every image, ignoring the cache and existing files")
    s.add_argument("--strict", action="store_true", help="exit 1 when any person was skipped")
    s.add_argument("--dask-address", help="tcp://HOST:PORT of an existing Dask scheduler")
    s.set_defaults(func=cmd_synthesize)

    i = sub.add_parser("inspect", help="statistics and an HTML page of a synthesized dataset")
    i.add_argument("dataset", type=Path)
    i.add_argument("--out", type=Path, help="page folder (default DATASET/inspect)")
    i.add_argument("--max-people", type=int, default=200)
    i.add_argument("--no-priors", action="store_true", help="skip recomputing priors for the page")
    i.set_defaults(func=cmd_inspect)

    c = sub.add_parser("schedule", help="serve synthesis / the main job on a schedule (needs `prefect server start`)")
    when = c.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help='cron string, e.g. "0 2 * * *"')
    when.add_argument("--interval", type=float, help="seconds between runs")
    c.add_argument("--name", help="deployment name prefix")
    c.add_argument("--checkpoint", type=Path)
    c.add_argument("--data", type=Path, help="keypoint-only folder to label on every run")
    c.add_argument("--out", type=Path)
    c.add_argument("--bank-split", default="train")
    c.add_argument("--preset", choices=["demo", "ccp", "ccp-photos", "bodyparts"], help="also serve the main job with this preset")
    c.add_argument("--data-root", type=Path)
    c.add_argument("--work", type=Path)
    c.set_defaults(func=cmd_schedule)
