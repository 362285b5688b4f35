"""The paper's Table 1 (and Table 2 rows) on real data: parsers trained on N real CCP labels
with M synthetic people, tested on the CCP val split.

    python experiments/parser_table.py --data-root ../shared/data \\
        --synthetic data/synth/ccp_kp data/synth/lsp --out docs/results/parser_table1.json

``--min-confidence`` and ``--synthetic-weight`` apply to every row (use another
``--runs`` folder for them).  Every row gets the same compute (``--iterations`` optimizer steps, batch 8); rows with
synthetic people spend the last ``--finetune`` steps on the real labels only (the release's
recipe) and mix real and synthetic samples half and half before that.  Rows are repeated
for each seed (the seed also draws the N-person and M-person subsets).  Finished runs are
reused (each run folder holds its metrics.json), so the command resumes.

``--variant NAME=DIR [DIR ...]`` adds Table 2 rows: the same N and M with synthetic labels
from other synthesized folders (k = 1 priors, the image-only refiner, ...).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from pipeline.formats.files import read_json, write_json
from parser_net.config import ParserTrainConfig
from parser_net.train import load_pool, train_parser


def run_row(pool, args, synthetic, n, m, seed, out_root: Path) -> dict:
    mixed = m != 0
    name = f"n{n or 'all'}_m{'all' if m is None else m}_{Path(synthetic[0]).name if mixed else 'real'}_s{seed}"
    cfg = ParserTrainConfig(
        data=str(Path(args.data_root) / "ccp"), out_dir=str(out_root / name),
        synthetic=synthetic if mixed else (), n_real=n, n_synthetic=m if mixed else None,
        real_fraction=0.5, iterations=args.iterations, finetune_iterations=args.finetune if mixed else 0,
        width=args.width, blocks=(1, 1, 1, 1), size=args.size, seed=seed, subset_seed=seed,
        threads=args.threads, min_confidence=args.min_confidence, synthetic_weight=args.synthetic_weight)
    metrics_path = Path(cfg.out_dir) / "metrics.json"
    if not metrics_path.exists():
        t = time.time()
        train_parser(cfg, pool)
        print(f"{name}: {time.time() - t:.0f} s", flush=True)
    return read_json(metrics_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--synthetic", nargs="+", default=["data/synth/ccp_kp", "data/synth/lsp"])
    ap.add_argument("--variant", nargs="+", action="append", default=[],
                    help="NAME=DIR [DIR ...]: extra rows with these synthetic folders (split at the last =)")
    ap.add_argument("--n-real", nargs="+", default=["100", "all"])
    ap.add_argument("--n-synthetic", nargs="+", default=["0", "1000", "all"])
    ap.add_argument("--variant-n-real", nargs="+", default=["100"])
    ap.add_argument("--variant-n-synthetic", nargs="+", default=["all"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--finetune", type=int, default=500)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--min-confidence", type=float, default=0.0, help="drop synthetic people below this confidence")
    ap.add_argument("--synthetic-weight", type=float, default=1.0, help="loss weight of synthetic samples")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", default="data/exp/parser_table")
    ap.add_argument("--out", default="docs/results/parser_table1.json")
    args = ap.parse_args()
    t0 = time.time()
    groups = [("part-level k=3", tuple(args.synthetic), args.n_real, args.n_synthetic)]
    for spec in args.variant:
        name, first = spec[0].rsplit("=", 1)
        groups.append((name, (first, *spec[1:]), args.variant_n_real, args.variant_n_synthetic))
    results = []
    for tag, synthetic, n_reals, n_synths in groups:
        pool = load_pool(str(Path(args.data_root) / "ccp"), synthetic, "ccp8", round(args.size * 1.25))
        for n in n_reals:
            for m in n_synths:
                n_, m_ = None if n == "all" else int(n), None if m == "all" else int(m)
                runs = [run_row(pool, args, synthetic, n_, m_, s, Path(args.runs)) for s in args.seeds]
                mious = [r["val"]["mean_iou"] for r in runs]
                results.append({
                    "synthetic_labels": tag if m != "0" else "none", "n_real": runs[0]["config"]["n_real"],
                    "n_synthetic": runs[0]["config"]["n_synthetic"], "seeds": args.seeds,
                    "miou": mious, "miou_mean": float(np.mean(mious)), "miou_std": float(np.std(mious)),
                    "iou_mean": {c: float(np.nanmean([r["val"]["iou"][c] or np.nan for r in runs]))
                                 for c in runs[0]["val"]["iou"]},
                    "train_seconds": [r["train_seconds"] for r in runs]})
                r = results[-1]
                print(f"{r['synthetic_labels']:>16} N={r['n_real']:4d} M={r['n_synthetic']:5d}: "
                      f"mIoU {100 * r['miou_mean']:.1f} +- {100 * r['miou_std']:.1f}", flush=True)
    write_json(args.out, {"rows": results, "args": vars(args), "wall_seconds": time.time() - t0,
                          "machine": f"{platform.machine()} {platform.processor() or ''}, threads {args.threads}"})
    print(json.dumps({"wrote": args.out, "wall_seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
