"""``partsynth train-parser`` and ``partsynth evaluate``."""
from __future__ import annotations

from pathlib import Path

from flows.options import add_config_options, config_from_args, progress_bar, training_console
from parser_net.config import ParserTrainConfig


def cmd_train_parser(args) -> int:
    from parser_net.train import fit_parser

    main = training_console()
    cfg = config_from_args(ParserTrainConfig, args)
    with progress_bar(disable=not main) as bar:
        task = bar.add_task("training", total=cfg.iterations)

        def progress(message, done, total):
            bar.update(task, description=message, completed=done, total=total)

        path = fit_parser(cfg, progress=progress)
    if main:
        print(f"checkpoint: {path}  (val scores in {Path(cfg.out_dir) / 'metrics.json'})")
    return 0


def cmd_evaluate(args) -> int:
    from pipeline.errors import ConfigError
    from pipeline.formats.files import write_json
    from parser_net.evaluate import evaluate_checkpoint, scores_markdown

    from parser_net.networks import network_outputs
    from refine_net.checkpoint import load_checkpoint

    results = {}
    for ckpt in args.checkpoint:
        outputs = network_outputs(load_checkpoint(str(ckpt), kind="parser").network)
        pose = None
        if "heatmaps" in outputs:
            pose = pose_scores(str(ckpt), str(args.pose_data or args.data), args.pose_split or args.split, args.device)
        if pose is not None:
            print(f"{ckpt}: PCK@0.2 {100 * pose['pck']:.1f} on {pose['people']} people")
        if "parsing" not in outputs:                # a pose-only network: PCK is all there is
            if pose is None:
                raise ConfigError(f"{ckpt}: a pose-only network, and {args.pose_data or args.data} has nobody with "
                                  f"keypoints{f' in split {args.pose_split or args.split!r}' if args.split else ''}")
            results[str(ckpt)] = dict(pose=pose, data=str(args.data), split=args.split)
            continue
        with progress_bar() as bar:
            task = bar.add_task(f"evaluating {ckpt}", total=None)
            scores, n, label_set = evaluate_checkpoint(
                str(ckpt), str(args.data), layout=args.layout, split=args.split, scales=tuple(args.scales),
                flip=args.flip, device=args.device, progress=lambda done: bar.update(task, completed=done))
        results[str(ckpt)] = dict(scores.as_dict(label_set.names), images=n, data=str(args.data),
                                  split=args.split, scales=list(args.scales), flip=args.flip)
        if pose is not None:
            results[str(ckpt)]["pose"] = pose
    parsed = {k: v for k, v in results.items() if "mean_iou" in v}
    table = scores_markdown(parsed) if parsed else ""
    print(table)
    if args.grid:
        write_grid(args)
    if args.out:
        write_json(args.out, results)
        Path(args.out).with_suffix(".md").write_text(table)
        print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


def write_grid(args) -> None:
    """PNG grid image | each checkpoint's parsing | ground truth of the first --grid-n images."""
    from pipeline.formats.files import write_image
    from parser_net.evaluate import checkpoint_grid

    write_image(args.grid, checkpoint_grid(titled(args.checkpoint), str(args.data),
                                           split=args.split, n=args.grid_n, photos=not args.no_photos,
                                           layout=args.layout))
    print(f"wrote {args.grid}")


def pose_scores(checkpoint: str, data: str, split: str | None, device: str = "auto") -> dict | None:
    """PCK@0.2 of a joint checkpoint on the people with keypoints of ``data`` (``split``);
    None for a plain parser or when nobody has keypoints."""
    from pipeline.readers.layouts import iter_records
    from parser_net.networks import heatmap_stride, load_parser, network_outputs
    from parser_net.pose_eval import evaluate_pose

    model, ckpt = load_parser(checkpoint, device, parsing=False)
    if "heatmaps" not in network_outputs(ckpt.network):
        return None
    recs = [r for r in iter_records(data, skip_bad=True) if r.keypoints is not None and (split is None or r.split == split)]
    if not recs:
        return None
    return evaluate_pose(model, recs, ckpt.network["size"], heatmap_stride(ckpt.network))


def add_parser_commands(sub) -> None:
    t = sub.add_parser("train-parser", help="train a parser on real (+ synthetic) labels")
    add_config_options(t, ParserTrainConfig)
    t.set_defaults(func=cmd_train_parser)

    e = sub.add_parser("evaluate", help="score parser checkpoints on a labelled dataset")
    e.add_argument("--checkpoint", type=Path, nargs="+", required=True)
    e.add_argument("--data", type=Path, required=True, help="labelled dataset in any supported layout")
    e.add_argument("--layout", help="force a layout instead of detecting it")
    e.add_argument("--split", help="only this split (e.g. val); default: every labelled image")
    e.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test scales, e.g. 0.75 1 1.25")
    e.add_argument("--flip", action="store_true", help="also parse the mirrored image")
    e.add_argument("--out", type=Path, help="write scores as JSON (and a .md table beside it)")
    e.add_argument("--grid", type=Path, help="also write a PNG grid: image | each checkpoint | ground truth")
    e.add_argument("--grid-n", type=int, default=6)
    e.add_argument("--no-photos", action="store_true", help="leave the photographs out of the grid")
    e.add_argument("--pose-data", type=Path, help="joint networks: score PCK@0.2 here (default --data)")
    e.add_argument("--pose-split", help="split of --pose-data for PCK (default --split)")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    e.set_defaults(func=cmd_evaluate)


def titled(checkpoints) -> dict[str, str]:
    """{title: path} of checkpoints for a grid: each run folder's name
    (``runs/parser_semi/last.pt`` -> ``parser_semi``), or the whole paths when two names
    agree."""
    names = [Path(c).parent.name if Path(c).name == "last.pt" else Path(c).name for c in checkpoints]
    if len(set(names)) < len(names):
        names = [str(c) for c in checkpoints]
    return dict(zip(names, map(str, checkpoints)))
