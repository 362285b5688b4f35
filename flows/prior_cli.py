"""``partsynth prior evaluate`` and ``partsynth prior show``."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

from flows.options import progress_bar


def _records(args, data=None, labelled: bool = True):
    """(layout, records with keypoints, and label maps when ``labelled``) of ``data``
    (default ``args.data``)."""
    from pipeline.readers.layouts import detect_layout, iter_records

    data = args.data if data is None else data
    layout = (args.layout if data == args.data else None) or detect_layout(data)
    options = {"keypoints_from_masks": True} if layout == "pascal_part" else {}
    if args.label_set:
        options["label_set"] = args.label_set
    recs = [r for r in iter_records(data, layout, skip_bad=True, **options)
            if (r.label_map is not None or not labelled) and r.keypoints is not None]
    return layout, recs


def _config(args):
    from pipeline.priors.bank import PriorConfig

    return PriorConfig(size=args.size, margin=args.margin, min_shared=args.min_shared, flip=args.flip,
                       torso_affine=not args.no_torso_affine, keep_width=not args.similarity)


def cmd_prior_evaluate(args) -> int:
    from rich.console import Console

    from pipeline.formats.files import write_json
    from pipeline.priors.evaluate import evaluate_leave_one_out, evaluate_split, scores_table

    console = Console()
    t0 = time.time()
    layout, recs = _records(args)
    if not recs:
        Console(stderr=True).print(f"error: no labelled people with keypoints in {args.data}")
        return 1
    cfg = _config(args)
    label_set = recs[0].label_set
    results = {"data": str(args.data), "layout": layout, "label_set": label_set,
               "config": asdict(cfg), "ks": args.ks, "tables": {}}
    runs = [("leave-one-out", lambda p: evaluate_leave_one_out(recs, cfg, args.ks, p))]
    if args.split_eval:
        train = [r for r in recs if r.split == "train"]
        val = [r for r in recs if r.split == "val"]
        runs.append(("bank train, queries val", lambda p: evaluate_split(train, val, cfg, args.ks, p)))
    for name, run in runs:
        with progress_bar() as bar:
            task = bar.add_task(name, total=None)
            scores, info = run(lambda: bar.advance(task))
        table = scores_table(scores, label_set)
        console.print(f"\n{name}: {info['queries']} queries, bank of {info['bank']}"
                      f" ({len(info['skipped'])} people skipped)")
        console.print(table, markup=False, highlight=False, soft_wrap=True)
        results["tables"][name] = {"queries": info["queries"], "bank": info["bank"],
                                   "skipped": info["skipped"], "markdown": table,
                                   "scores": {m: s.as_dict() for m, s in scores.items()}}
    results["seconds"] = round(time.time() - t0, 1)
    if args.out:
        write_json(args.out, results)
        console.print(f"wrote {args.out}")
    return 0


def cmd_prior_show(args) -> int:
    from pipeline.formats import files
    from pipeline.priors.bank import PriorBank
    from pipeline.pictures.prior_grid import prior_grid

    _, recs = _records(args, args.bank)
    bank = PriorBank.from_records(recs, _config(args))
    if args.bank:
        _, recs = _records(args, labelled=False)
    by_id = {r.person_id: r for r in recs}
    missing = [i for i in args.ids if i not in by_id]
    if missing:
        print(f"error: unknown or unusable person ids: {missing}", file=sys.stderr)
        return 1
    files.write_image(args.out, prior_grid(bank, [by_id[i] for i in args.ids], args.k, args.tile,
                                           photos=not args.no_photos))
    print(f"wrote {args.out}")
    return 0


def add_prior_commands(sub) -> None:
    prior = sub.add_parser("prior", help="part-level priors: evaluate and look at them")
    psub = prior.add_subparsers(dest="prior_command", required=True)

    def common(p):
        p.add_argument("--data", type=Path, required=True, help="labelled dataset with keypoints")
        p.add_argument("--layout", help="force a layout instead of detecting it")
        p.add_argument("--label-set", help="ccp8/ccp59 for CCP, pascal6/pascal10 for PASCAL-Part")
        p.add_argument("--size", type=int, default=128, help="crop frame side in pixels (paper: 256)")
        p.add_argument("--margin", type=float, default=0.25)
        p.add_argument("--min-shared", type=int, default=6, help="joints two poses must share")
        p.add_argument("--flip", action="store_true", help="add mirrored copies to the bank")
        p.add_argument("--similarity", action="store_true", help="pure similarity per limb (the release)")
        p.add_argument("--no-torso-affine", action="store_true", help="similarity for the torso too")

    e = psub.add_parser("evaluate", help="score argmax(prior) against ground truth")
    common(e)
    e.add_argument("--ks", type=int, nargs="+", default=[1, 3, 5, 7])
    e.add_argument("--split-eval", action="store_true", help="also bank = train split, queries = val split")
    e.add_argument("--out", type=Path, help="write the results as JSON")
    e.set_defaults(func=cmd_prior_evaluate)

    s = psub.add_parser("show", help="PNG grid: image | neighbours | prior | argmax | ground truth")
    common(s)
    s.add_argument("--bank", type=Path, help="labelled dataset whose people form the bank (default: --data's own, "
                                             "each query left out); --data's people then need keypoints only")
    s.add_argument("--ids", nargs="+", required=True, help="person ids to show")
    s.add_argument("--k", type=int, default=3)
    s.add_argument("--tile", type=int, default=128)
    s.add_argument("--no-photos", action="store_true",
                   help="skeletons and label maps on black instead of the photographs")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=cmd_prior_show)


