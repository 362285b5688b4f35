"""``partsynth run``, ``synthesize``, ``inspect`` and ``schedule``: the Prefect flows from the
command line."""
from __future__ import annotations

import os
import threading
from pathlib import Path

def _quiet_prefect() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def cmd_run(args) -> int:
    import resource
    import time

    _quiet_prefect()
    from flows.experiment import preset, run_experiment

    p = preset(args.preset, args.data_root and str(args.data_root))
    work = str(args.work or Path("data/runs") / args.preset)
    t = time.time()
    rows = run_experiment(p.labelled, list(p.keypoint_only), work,
                          refiner_epochs=args.refiner_epochs or p.refiner_epochs,
                          parser_iterations=args.parser_iterations or p.parser_iterations,
                          finetune_iterations=p.finetune_iterations, threads=args.threads,
                          photos_in_grids=p.photos_in_grids, reports=str(args.reports),
                          dask_address=args.dask_address, profile=args.profile)
    from parser_net.evaluate import scores_markdown

    print(f"\nparsers on the val split of {p.labelled} ({args.preset} preset, {args.profile} profile):\n")
    print(scores_markdown(rows))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"wall time {time.time() - t:.0f} s, peak memory {peak_gib:.2f} GiB; reports in {args.reports}/")
    return 0


def cmd_synthesize(args) -> int:
    _quiet_prefect()
    from flows.cli import _progress
    from flows.synthesis import synthesize_labels, task_runner
    from refine_net.synthesize import keypoint_only_people

    total = len({str(r.image_path) for r in keypoint_only_people(args.data, args.layout)})
    items = Path(args.out) / "items"
    done = threading.Event()
    with _progress() as bar:
        task = bar.add_task("synthesizing", total=total)

        def watch():
            while not done.wait(0.5):
                bar.update(task, completed=len(list(items.glob("*.json"))) if items.exists() else 0)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            flow = synthesize_labels.with_options(task_runner=task_runner(args.dask_address, args.workers))
            totals = flow(str(args.checkpoint), str(args.data), str(args.out),
                          bank_data=args.bank_data and str(args.bank_data), bank_split=args.bank_split,
                          k=args.k, layout=args.layout, save_probabilities=args.save_probabilities,
                          threads_per_task=args.threads_per_task)
        finally:
            done.set()
            watcher.join()
            bar.update(task, completed=len(list(items.glob("*.json"))) if items.exists() else 0)
    print(f"{args.out}: {totals}")
    return 0


def cmd_inspect(args) -> int:
    _quiet_prefect()
    from rich.console import Console
    from rich.table import Table

    from flows.inspect import inspect_dataset
    from pipeline.readers.folder import read_dataset_info

    read_dataset_info(args.dataset)          # a clear error before starting Prefect
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

    from flows.experiment import preset, run_experiment
    from flows.synthesis import synthesize_labels

    if not PREFECT_API_URL.value():
        raise ValueError("no Prefect server: start one with `prefect server start` and set "
                         "PREFECT_API_URL=http://127.0.0.1:4200/api")
    when = {"cron": args.cron} if args.cron else {"interval": args.interval}
    deployments = []
    if args.data:
        if not (args.checkpoint and args.out):
            raise ValueError("scheduling synthesis needs --checkpoint, --data and --out")
        deployments.append(synthesize_labels.to_deployment(
            name=args.name or "synthesize", **when,
            parameters={"checkpoint": str(Path(args.checkpoint).resolve()), "data": str(Path(args.data).resolve()),
                        "out": str(Path(args.out).resolve()), "bank_split": args.bank_split}))
    if args.preset:
        p = preset(args.preset, args.data_root and str(args.data_root))
        deployments.append(run_experiment.to_deployment(
            name=f"{args.name or 'experiment'}-{args.preset}", **when,
            parameters={"labelled": p.labelled, "keypoint_only": list(p.keypoint_only),
                        "work": str(Path(args.work or f"data/runs/{args.preset}").resolve()),
                        "refiner_epochs": p.refiner_epochs, "parser_iterations": p.parser_iterations,
                        "finetune_iterations": p.finetune_iterations, "photos_in_grids": p.photos_in_grids}))
    if not deployments:
        raise ValueError("nothing to schedule: give --data/--checkpoint/--out (synthesis) and/or --preset (experiment)")
    print(f"serving {', '.join(d.name for d in deployments)} ({when}); Ctrl-C stops")
    serve(*deployments)
    return 0


def add_run_commands(sub) -> None:
    r = sub.add_parser("run", help="the main job: refiner -> synthetic labels -> parsers -> report")
    r.add_argument("--preset", choices=["demo", "ccp"], default="demo")
    r.add_argument("--data-root", type=Path, help="for --preset ccp: the folder holding ccp/ and lsp/")
    r.add_argument("--work", type=Path, help="run folder (default data/runs/PRESET)")
    r.add_argument("--reports", type=Path, default=Path("reports"))
    r.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    r.add_argument("--refiner-epochs", type=int)
    r.add_argument("--parser-iterations", type=int)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--dask-address", help="tcp://HOST:PORT of a Dask scheduler for synthesis")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("synthesize", help="label the keypoint-only people of a dataset (Prefect flow)")
    s.add_argument("--checkpoint", type=Path, required=True, help="refiner checkpoint (last.pt)")
    s.add_argument("--data", type=Path, required=True, help="dataset or annotation file with keypoint-only people")
    s.add_argument("--layout", help="force a layout instead of detecting it")
    s.add_argument("--out", type=Path, required=True, help="output dataset folder (resumable, cached)")
    s.add_argument("--bank-data", type=Path, help="labelled bank (default: the refiner's training data)")
    s.add_argument("--bank-split", default="train", help="bank split for priors (default train; 'all' for every person)")
    s.add_argument("--k", type=int, default=3)
    s.add_argument("--save-probabilities", action="store_true")
    s.add_argument("--workers", type=int, default=2, help="thread-runner workers")
    s.add_argument("--threads-per-task", type=int, default=1, help="torch threads per worker")
    s.add_argument("--dask-address", help="tcp://HOST:PORT of an existing Dask scheduler")
    s.set_defaults(func=_bank_split_all(cmd_synthesize))

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
    c.add_argument("--preset", choices=["demo", "ccp"], help="also serve the main job with this preset")
    c.add_argument("--data-root", type=Path)
    c.add_argument("--work", type=Path)
    c.set_defaults(func=cmd_schedule)


def _bank_split_all(fn):
    def run(args):
        if args.bank_split == "all":
            args.bank_split = None
        return fn(args)

    return run
