"""The ``partsynth`` command line: the entry point and the ``data`` commands.

The other commands live in ``flows/*_cli.py`` (each adds its sub-commands to the parser);
shared helpers in :mod:`flows.options`.  Heavy imports happen inside the commands so
``partsynth --help`` stays fast.  Errors of the user's input or config
(:class:`pipeline.errors.DataError`, :class:`pipeline.errors.ConfigError`) and of the
operating system (a read-only folder, a full disk: :class:`OSError`) print one line naming
the file and exit 1, with no Prefect traceback before it; anything else is a bug and keeps
its traceback.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from flows.options import progress_bar
from pipeline.demo import DEFAULT_DEMO_DIR


def _version() -> str:
    try:
        return version("partsynth")
    except PackageNotFoundError:
        return "unknown (not installed)"


def cmd_data_demo(args) -> int:
    from pipeline.demo import write_demo_set

    out = write_demo_set(args.out, num_labelled=args.num_labelled,
                         num_keypoint_only=args.num_keypoint_only, size=args.size, seed=args.seed,
                         overwrite=args.overwrite)
    print(f"wrote the synthetic demo set to {out}")
    return 0


def cmd_data_summary(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from pipeline.errors import DataError
    from pipeline.readers.layouts import detect_layout, iter_records
    from pipeline.formats.manifest import build_manifest, summarize, write_manifest
    from pipeline.formats.records import ReadReport

    from pipeline.demo import ensure_demo

    console = Console()
    errors = Console(stderr=True, soft_wrap=True)
    path = ensure_demo(DEFAULT_DEMO_DIR) if args.demo else args.path
    if path is None:
        errors.print("[red]error:[/red] give a dataset PATH or --demo")
        return 2
    try:
        layout = args.layout or detect_layout(path)
        report = ReadReport()
        options = {"label_set": args.label_set} if args.label_set else {}
        records = iter_records(path, layout, skip_bad=args.skip_bad, report=report, **options)
        root = path if Path(path).is_dir() else Path(path).parent
        with progress_bar() as bar:
            task = bar.add_task(f"reading {layout}", total=None)
            df = build_manifest(records, root, progress=lambda _: bar.advance(task))
    except DataError as e:
        errors.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        return 1
    if args.manifest:
        write_manifest(df, args.manifest)
        console.print(f"manifest: {args.manifest} ({len(df)} rows)")
    s = summarize(df)
    table = Table(title=f"{path} ({layout})")
    table.add_column("quantity")
    table.add_column("count", justify="right")
    for name, value in (("images", s.images), ("people", s.people), ("labelled people", s.labelled),
                        ("keypoint-only people", s.keypoint_only),
                        ("people with neither", s.unusable)):
        table.add_row(name, str(value))
    for split, n in s.splits.items():
        table.add_row(f"split {split}", str(n))
    console.print(table)
    for label_set, shares in s.class_shares.items():
        t = Table(title=f"pixel share per class ({label_set}, labelled people)")
        t.add_column("id", justify="right")
        t.add_column("class")
        t.add_column("share", justify="right")
        for i, (name, share) in enumerate(shares):
            t.add_row(str(i), name, f"{100 * share:.2f}%")
        console.print(t)
    console.print(f"reader notes: {report.summary()}")
    for file, problem in report.skipped[:20]:
        console.print(f"  [yellow]{file}[/yellow]: {problem}")
    return 0


def cmd_data_score(args) -> int:
    from pipeline.formats.files import write_json
    from pipeline.synth_score import score_synthesis

    scores = score_synthesis(args.synth, args.truth, None if args.split == "all" else args.split, args.layout)
    if args.out:
        write_json(args.out, scores)
    cells = "  ".join(f"{k} {100 * v:.1f}" for k, v in scores["iou"].items() if v is not None)
    print(f"{args.synth} vs {args.truth} ({args.split}, {scores['images']} images, "
          f"{scores['images_unlabelled']} unlabelled, {100 * scores['ignored_fraction']:.1f}% of pixels ignored): "
          f"mIoU {100 * scores['mean_iou']:.1f}  "
          f"silhouette IoU {100 * scores['silhouette_iou']:.1f}  mIoU of the kept pixels "
          f"{100 * scores['kept_mean_iou']:.1f}\n  {cells}")
    return 0


def cmd_data_show(args) -> int:
    from pipeline.formats import files
    from pipeline.pictures.dataset_grid import people_grid
    from pipeline.readers.layouts import drawable_people

    recs = drawable_people(args.path, args.layout, args.n, args.ids, args.seed)
    if not recs:
        print("error: no people with keypoints and a label map or person mask to show", file=sys.stderr)
        return 1
    files.write_image(args.out, people_grid(recs, args.tile, photos=not args.no_photos))
    print(f"wrote {args.out} ({len(recs)} people)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="partsynth",
        description="Pose-guided part-level priors: pixel-wise human-parsing labels for "
                    "keypoint-only person images (Fang et al., CVPR 2018).")
    parser.add_argument("--version", action="version", version=f"partsynth {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="inspect and generate datasets").add_subparsers(
        dest="data_command", required=True)

    s = data.add_parser("summary", help="detect a dataset's layout, print counts and class shares")
    s.add_argument("path", nargs="?", type=Path, help="dataset folder or annotation file")
    s.add_argument("--demo", action="store_true",
                   help=f"summarise the synthetic demo set ({DEFAULT_DEMO_DIR}, generated if absent)")
    s.add_argument("--layout", help="force a layout instead of detecting it")
    s.add_argument("--label-set", help="label set for ccp (ccp8, ccp59) or pascal_part (pascal6, pascal10)")
    s.add_argument("--manifest", type=Path, help="also write the manifest to this Parquet file")
    s.add_argument("--skip-bad", action="store_true", help="skip and report bad items instead of stopping")
    s.set_defaults(func=cmd_data_summary)

    g = data.add_parser("show", help="PNG grid of labelled people (crop | label overlay)")
    g.add_argument("path", type=Path)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--layout")
    g.add_argument("--n", type=int, default=16, help="people drawn at random")
    g.add_argument("--ids", nargs="+", help="these person ids instead")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--tile", type=int, default=128)
    g.add_argument("--no-photos", action="store_true")
    g.set_defaults(func=cmd_data_show)

    c = data.add_parser("score", help="score synthesized labels against ground truth (synthesize --relabel)")
    c.add_argument("synth", type=Path, help="synthesized dataset folder")
    c.add_argument("--truth", type=Path, required=True, help="the labelled dataset the photos come from")
    c.add_argument("--split", default="val", help="ground-truth split scored ('all': every labelled image)")
    c.add_argument("--layout", help="force the layout of --truth")
    c.add_argument("--out", type=Path, help="also write the scores to this JSON file")
    c.set_defaults(func=cmd_data_score)

    d = data.add_parser("demo", help="generate the embedded synthetic demo set")
    d.add_argument("out", type=Path, nargs="?", default=DEFAULT_DEMO_DIR)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--num-labelled", type=int, default=120)
    d.add_argument("--num-keypoint-only", type=int, default=120)
    d.add_argument("--size", type=int, default=160, help="image side in pixels")
    d.add_argument("--overwrite", action="store_true")
    d.set_defaults(func=cmd_data_demo)

    from flows.prior_cli import add_prior_commands

    add_prior_commands(sub)
    from flows.refine_cli import add_refine_commands

    add_refine_commands(sub)
    from flows.parser_cli import add_parser_commands

    add_parser_commands(sub)
    from flows.annotation_cli import add_annotation_commands

    add_annotation_commands(sub)
    from flows.predict_cli import add_predict_commands

    add_predict_commands(sub)
    from flows.keypoints_cli import add_keypoints_commands

    add_keypoints_commands(sub)
    from flows.run_cli import add_run_commands

    add_run_commands(sub)
    from flows.serve_cli import add_serve_command

    add_serve_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from flows.options import EXPECTED_ERRORS, error_line, quiet_prefect_tracebacks

    args = build_parser().parse_args(argv)
    try:
        with quiet_prefect_tracebacks():
            return args.func(args)
    except EXPECTED_ERRORS as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from flows.options import interrupted

        interrupted("interrupted; finished work is kept: rerun the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
