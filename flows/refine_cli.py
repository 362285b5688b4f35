"""``partsynth train-refiner`` and ``partsynth evaluate-refiner``."""
from __future__ import annotations

import logging
from pathlib import Path


def cmd_train_refiner(args) -> int:
    from flows.cli import _progress
    from refine_net.train import TrainConfig, main

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig(data=str(args.data), out_dir=str(args.out), size=args.size, k=args.k, n=args.n,
                      use_prior=not args.no_prior, loss=args.loss, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, max_minutes=args.max_minutes,
                      base_filters=args.base_filters, depth=args.depth, seed=args.seed,
                      label_set=args.label_set, threads=args.threads)
    with _progress() as bar:
        task = bar.add_task("training", total=None)

        def progress(stage, done, total):
            bar.update(task, description=stage, completed=done, total=total)

        path = main(cfg, progress=progress, resume=not args.restart)
    print(f"checkpoint: {path}")
    return 0


def cmd_evaluate_refiner(args) -> int:
    from pipeline.files import read_json, write_image, write_json
    from pipeline.labels import LABEL_SETS
    from pipeline.prior_eval import scores_table
    from refine_net.evaluate import evaluate_checkpoint, refine_grid

    results, table_rows = {}, {}
    ds = None
    for ckpt in args.checkpoint:
        scores, ds = evaluate_checkpoint(str(ckpt), args.data and str(args.data))
        cfg = read_json(Path(ckpt).parent / "config.json")["train"]
        name = f"{Path(ckpt).parent.name} ({'image + prior' if cfg['use_prior'] else 'image only'}, {cfg['loss']})"
        table_rows[f"{name}: refiner"] = scores["refiner"]
        if "prior argmax" in scores:
            table_rows["prior argmax (k nearest, train bank)"] = scores["prior argmax"]
        results[str(ckpt)] = {m: s.as_dict(LABEL_SETS[ds.bank.label_set].names) for m, s in scores.items()}
    print(scores_table(table_rows, ds.bank.label_set))
    if args.out:
        write_json(args.out, results)
    if args.grid:
        ids = args.ids or ds.s.person_ids[:6]
        write_image(args.grid, refine_grid(str(args.checkpoint[0]), ds, ids, photos=not args.no_photos))
        print(f"wrote {args.grid}")
    return 0


def add_refine_commands(sub) -> None:
    e = sub.add_parser("evaluate-refiner", help="score refiner checkpoints on the val split")
    e.add_argument("checkpoint", type=Path, nargs="+")
    e.add_argument("--data", type=Path, help="labelled dataset (default: the training data)")
    e.add_argument("--out", type=Path, help="write scores as JSON")
    e.add_argument("--grid", type=Path, help="write a PNG grid image | prior | refined | ground truth")
    e.add_argument("--ids", nargs="+", help="person ids for the grid (default: the first 6)")
    e.add_argument("--no-photos", action="store_true", help="leave photographs out of the grid")
    e.set_defaults(func=cmd_evaluate_refiner)

    t = sub.add_parser("train-refiner", help="train the refinement U-Net on a labelled dataset")
    t.add_argument("--data", type=Path, required=True, help="labelled dataset with keypoints (train/val splits)")
    t.add_argument("--out", type=Path, required=True, help="run folder (last.pt, config.json, history.json)")
    t.add_argument("--profile", choices=["cpu", "gpu"], default="cpu",
                   help="cpu: 128 px, 32 filters, depth 5; gpu: 256 px, 64 filters, depth 8 (the paper)")
    t.add_argument("--size", type=int)
    t.add_argument("--base-filters", type=int)
    t.add_argument("--depth", type=int)
    t.add_argument("--k", type=int, default=3)
    t.add_argument("--n", type=int, default=5)
    t.add_argument("--no-prior", action="store_true", help="image-only baseline (paper Fig. 7)")
    t.add_argument("--loss", choices=["l1", "ce"], default="l1")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--max-minutes", type=float, help="stop after the epoch that crosses this budget")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--label-set", help="ccp8/ccp59 for CCP, pascal6/pascal10 for PASCAL-Part")
    t.add_argument("--threads", type=int, help="torch threads")
    t.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    t.set_defaults(func=_with_profile(cmd_train_refiner))


def _with_profile(fn):
    def run(args):
        from refine_net.train import PROFILES

        for key, value in PROFILES[args.profile].items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        return fn(args)

    return run
