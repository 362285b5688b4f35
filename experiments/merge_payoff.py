"""Merge the JSONs of several ``experiments/payoff.py`` runs into one, seeds joined per row.

    python experiments/merge_payoff.py docs/results/viton_pool_n100_s0.json RUN_S1.json RUN_S2.json \\
        --rows 100_real_1500_decoder64_lite0 100_vitonlite_1500_decoder64_lite0 --out docs/results/OUT.json

For the rows of one table made in different sessions or on different machines (payoff.py
reuses finished runs only from its own ``--runs`` folder).  A row's seeds are the union over
the inputs, in order; a seed found in two inputs must have the same mIoU (to 1e-9), else it
is an error naming both files, since two runs of one seed that disagree mean the inputs
were not made alike.  ``miou_mean`` is recomputed over the joined seeds and ``iou_mean``
(per class) is the seed-weighted mean of the inputs' per-class means (None where no
input scored the class).  Rows keep the order of ``--rows`` (default: first appearance);
a named row found in no input is an error.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.formats.files import read_json, write_json


def merge_rows(inputs: list[tuple[str, dict]]) -> dict[str, dict]:
    """Rows of payoff JSONs joined by name: ``{row: merged row}``.

    ``inputs`` holds (file name, loaded payoff JSON) pairs.  Raises ValueError when one seed
    of a row has two different mIoUs, or when a row's seed lists and mIoU lists differ in
    length."""
    first: dict[str, dict] = {}                           # row name -> its first input's row (config etc.)
    by_seed: dict[str, dict[int, tuple]] = {}             # row name -> seed -> (mIoU, file, seconds, per-class)
    for name, doc in inputs:
        for row in doc["rows"]:
            if len(row["seeds"]) != len(row["miou"]):
                raise ValueError(f"{name}: row {row['row']} has {len(row['seeds'])} seeds but {len(row['miou'])} mIoUs")
            first.setdefault(row["row"], row)
            seeds = by_seed.setdefault(row["row"], {})
            seconds = row.get("train_seconds", [])
            for i, (seed, miou) in enumerate(zip(row["seeds"], row["miou"])):
                if seed in seeds:
                    if abs(seeds[seed][0] - miou) > 1e-9:
                        raise ValueError(f"row {row['row']} seed {seed}: mIoU {seeds[seed][0]:.6f} in {seeds[seed][1]} "
                                         f"but {miou:.6f} in {name}")
                    continue
                # each seed of a row counts once, with its row's per-class mean
                seeds[seed] = (miou, name, seconds[i] if i < len(seconds) else None, row["iou_mean"])
    merged = {}
    for row_name, seeds in by_seed.items():
        runs = list(seeds.values())
        per_class = {c: [r[3][c] for r in runs if r[3].get(c) is not None] for c in runs[0][3]}
        merged[row_name] = {**first[row_name], "seeds": list(seeds), "miou": [r[0] for r in runs],
                            "miou_mean": float(np.mean([r[0] for r in runs])),
                            "iou_mean": {c: float(np.mean(vs)) if vs else None for c, vs in per_class.items()},
                            "train_seconds": [r[2] for r in runs], "from": {str(s): r[1] for s, r in seeds.items()}}
    return merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="payoff.py JSONs")
    ap.add_argument("--rows", nargs="+", help="rows to keep, in this order (default: all, first appearance)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    merged = merge_rows([(p, read_json(p)) for p in args.inputs])
    names = args.rows or list(merged)
    missing = [n for n in names if n not in merged]
    if missing:
        raise SystemExit(f"rows in none of the inputs: {', '.join(missing)}")
    rows = [merged[n] for n in names]
    write_json(args.out, {"rows": rows, "inputs": [str(Path(p)) for p in args.inputs]})
    for r in rows:
        print(f"{r['row']:>44}: mIoU {100 * r['miou_mean']:.2f} (seeds {r['seeds']}: "
              f"{' / '.join(f'{100 * v:.2f}' for v in r['miou'])})")
    print(json.dumps({"wrote": args.out}))


if __name__ == "__main__":
    main()
