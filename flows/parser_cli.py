"""``partsynth train-parser`` and ``partsynth evaluate``."""
from __future__ import annotations

import logging
from pathlib import Path


def cmd_train_parser(args) -> int:
    from flows.cli import _progress
    from parser_net.train import PROFILES, ParserTrainConfig, main

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    profile = PROFILES[args.profile]
    cfg = ParserTrainConfig(
        data=str(args.data), out_dir=str(args.out), synthetic=tuple(str(s) for s in args.synthetic),
        n_real=args.n_real, n_synthetic=args.n_synthetic, min_confidence=args.min_confidence,
        real_fraction=None if args.real_fraction < 0 else args.real_fraction,
        synthetic_weight=args.synthetic_weight, iterations=args.iterations,
        finetune_iterations=args.finetune_iterations, arch=args.arch,
        width=args.width or profile["width"], blocks=profile["blocks"], head_width=profile["head_width"],
        size=args.size or profile["size"], batch_size=args.batch_size or profile["batch_size"],
        optimizer=args.optimizer, lr=args.lr, seed=args.seed, subset_seed=args.seed,
        label_set=args.label_set, threads=args.threads, model=args.model, structure_loss=args.structure_loss,
        pose_data=args.pose_data and str(args.pose_data), pose_split=args.pose_split)
    with _progress() as bar:
        task = bar.add_task("training", total=cfg.iterations)

        def progress(message, done, total):
            bar.update(task, description=message, completed=done, total=total)

        path = main(cfg, progress=progress)
    print(f"checkpoint: {path}  (val scores in {Path(cfg.out_dir) / 'metrics.json'})")
    return 0


def cmd_evaluate(args) -> int:
    from flows.cli import _progress
    from pipeline.files import write_json
    from parser_net.evaluate import evaluate_checkpoint, scores_markdown

    results = {}
    for ckpt in args.checkpoint:
        with _progress() as bar:
            task = bar.add_task(f"evaluating {ckpt}", total=None)
            scores, n, label_set = evaluate_checkpoint(
                str(ckpt), str(args.data), layout=args.layout, split=args.split, scales=tuple(args.scales),
                flip=args.flip, progress=lambda done: bar.update(task, completed=done))
        results[str(ckpt)] = dict(scores.as_dict(label_set.names), images=n, data=str(args.data),
                                  split=args.split, scales=list(args.scales), flip=args.flip)
        pose = pose_scores(str(ckpt), str(args.pose_data or args.data), args.pose_split or args.split)
        if pose is not None:
            results[str(ckpt)]["pose"] = pose
            print(f"{ckpt}: PCK@0.2 {100 * pose['pck']:.1f} on {pose['people']} people")
    table = scores_markdown(results)
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
    from pipeline.files import write_image
    from parser_net.evaluate import checkpoint_grid

    write_image(args.grid, checkpoint_grid({str(c): str(c) for c in args.checkpoint}, str(args.data),
                                           split=args.split, n=args.grid_n, photos=not args.no_photos,
                                           layout=args.layout))
    print(f"wrote {args.grid}")


def pose_scores(checkpoint: str, data: str, split: str | None) -> dict | None:
    """PCK@0.2 of a joint checkpoint on the people with keypoints of ``data`` (``split``);
    None for a plain parser or when nobody has keypoints."""
    from pipeline.layouts import iter_records
    from parser_net.pose_eval import evaluate_pose
    from parser_net.train import load_parser

    model, ckpt = load_parser(checkpoint)
    if ckpt.get("model_kind") != "joint":
        return None
    recs = [r for r in iter_records(data, skip_bad=True) if r.keypoints is not None and (split is None or r.split == split)]
    if not recs:
        return None
    return evaluate_pose(model, recs, ckpt["size"], ckpt["parser_config"]["output_stride"])


def add_parser_commands(sub) -> None:
    t = sub.add_parser("train-parser", help="train a parser on real (+ synthetic) labels")
    t.add_argument("--data", type=Path, required=True, help="real labelled dataset (train split trains, val is scored)")
    t.add_argument("--out", type=Path, required=True, help="run folder (last.pt, config.json, metrics.json)")
    t.add_argument("--synthetic", type=Path, nargs="*", default=[], help="synthesized dataset folders to mix in")
    t.add_argument("--profile", choices=["cpu", "gpu"], default="cpu",
                   help="cpu: 160 px, width 24; gpu: 320 px, width 64, deeper (paper-sized)")
    t.add_argument("--arch", choices=["deeplab", "attention"], default="deeplab",
                   help="single-scale DeepLab/ASPP or attention to scale (scales 1, 0.75, 0.5)")
    t.add_argument("--n-real", type=int, help="random subset of real people (default: all)")
    t.add_argument("--n-synthetic", type=int, help="random subset of synthetic people (default: all)")
    t.add_argument("--min-confidence", type=float, default=0.0, help="drop synthetic people below this refiner confidence")
    t.add_argument("--real-fraction", type=float, default=0.5, help="share of real samples while mixing; -1 pools all")
    t.add_argument("--synthetic-weight", type=float, default=1.0, help="loss weight of synthetic samples")
    t.add_argument("--iterations", type=int, default=3000)
    t.add_argument("--finetune-iterations", type=int, default=0, help="final steps on real labels only")
    t.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--size", type=int, help="long side of training images (pixels)")
    t.add_argument("--width", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--label-set", default="ccp8")
    t.add_argument("--threads", type=int)
    t.add_argument("--model", choices=["parser", "joint"], default="parser",
                   help="joint: JPPNet-style parsing + 16-joint pose network")
    t.add_argument("--structure-loss", action="store_true", help="SS-JPPNet structure-sensitive parsing loss")
    t.add_argument("--pose-data", type=Path, help="keypoint dataset scored with PCK@0.2 (never trained on), e.g. LSP")
    t.add_argument("--pose-split", default="test")
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
    e.set_defaults(func=cmd_evaluate)
