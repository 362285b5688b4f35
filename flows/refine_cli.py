"""``partsynth train-refiner`` and ``partsynth evaluate-refiner``."""
from __future__ import annotations

from pathlib import Path

from flows.options import add_config_options, config_from_args, progress_bar, training_console
from refine_net.config import RefinerTrainConfig


def cmd_train_refiner(args) -> int:
    from refine_net.train import fit_refiner

    main = training_console()
    cfg = config_from_args(RefinerTrainConfig, args)
    with progress_bar(disable=not main) as bar:
        task = bar.add_task("training", total=None)

        def progress(stage, done, total):
            bar.update(task, description=stage, completed=done, total=total)

        path = fit_refiner(cfg, progress=progress, resume=not args.restart)
    if main:
        print(f"checkpoint: {path}")
    return 0


def cmd_evaluate_refiner(args) -> int:
    from pipeline.formats.files import write_image, write_json
    from pipeline.labels import LABEL_SETS
    from pipeline.priors.evaluate import scores_table
    from refine_net.checkpoint import load_checkpoint
    from refine_net.evaluate import evaluate_checkpoint, refine_grid
    from refine_net.train import training_config

    results, table_rows = {}, {}
    ds = None
    for ckpt in args.checkpoint:
        cfg = training_config(load_checkpoint(ckpt, kind="refiner"))
        scores, ds = evaluate_checkpoint(str(ckpt), args.data and str(args.data), device=args.device)
        name = f"{Path(ckpt).parent.name} ({'image + prior' if cfg.use_prior else 'image only'}, {cfg.loss})"
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
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    e.set_defaults(func=cmd_evaluate_refiner)

    t = sub.add_parser("train-refiner", help="train the refinement U-Net on a labelled dataset")
    add_config_options(t, RefinerTrainConfig)
    t.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    t.set_defaults(func=cmd_train_refiner)
