"""Val mIoU against the number of real labels, real only vs real + synthetic (docs/results.md, lever 6): a table and a plot from the JSON files of ``experiments/payoff.py``.

    python experiments/n_curve.py docs/results/n_curve_*.json docs/results/person_masks_n100.json \\
        --sources real ccpm --steps 1500 --png docs/n_curve_ccp.png

Rows are grouped by the number of real people (``n_real`` of each row) and by source (the
middle part of the row name, ``N_SOURCE_STEPS``); only rows trained for ``--steps`` steps
count.  Each point is the mean over the row's seeds, with the seeds' range as an error bar.
``--same-labels`` adds the points of ``experiments/refiner_at_n.py`` (real only, and real +
synthetic from a refiner trained on the same N people) as hollow markers.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

from pipeline.formats.files import read_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def collect(paths: list[str], sources: list[str], steps: int) -> dict[tuple[int, str], list[float]]:
    """{(n_real, source): val mIoU per seed, in %} over every matching row of ``paths``; a
    row found in several files counts once (same seeds: the later file wins)."""
    points: dict[tuple[int, str], dict[int, float]] = {}
    for path in paths:
        for row in read_json(path)["rows"]:
            _, source, row_steps = row["row"].split("_")[:3]
            if source in sources and int(row_steps) == steps:
                per_seed = points.setdefault((row["n_real"], source), {})
                per_seed.update({s: 100 * v for s, v in zip(row["seeds"], row["miou"])})
    return {key: [per_seed[s] for s in sorted(per_seed)] for key, per_seed in points.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="JSON files written by experiments/payoff.py")
    ap.add_argument("--sources", nargs=2, default=["real", "ccpm"], metavar=("BASELINE", "SYNTHETIC"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--png", default="docs/n_curve_ccp.png")
    ap.add_argument("--same-labels", nargs="*", default=[], help="JSON files written by experiments/refiner_at_n.py")
    args = ap.parse_args()
    base, synth = args.sources
    points = collect(args.results, args.sources, args.steps)
    ns = sorted({n for n, s in points if (n, base) in points and (n, synth) in points})
    if not ns:
        raise SystemExit(f"no N has rows of both {base} and {synth} at {args.steps} steps")
    print(f"| real people | {base}: val mIoU (seeds) | mean | {synth}: val mIoU (seeds) | mean | gain |")
    print("|---|---|---|---|---|---|")
    for n in ns:
        a, b = points[(n, base)], points[(n, synth)]
        print(f"| {n} | {' / '.join(f'{v:.2f}' for v in a)} | {np.mean(a):.1f} | "
              f"{' / '.join(f'{v:.2f}' for v in b)} | {np.mean(b):.1f} | {np.mean(b) - np.mean(a):+.1f} |")
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for source, label in ((base, "real labels only"), (synth, "real + synthetic people")):
        vals = [points[(n, source)] for n in ns]
        mean = np.array([np.mean(v) for v in vals])
        err = np.array([[m - min(v), max(v) - m] for m, v in zip(mean, vals)]).T
        ax.errorbar(ns, mean, yerr=err, marker="o", capsize=3,
                    label=f"{label} ({source})" + (", refiner of all 601" if source == synth else ""))
    for path in args.same_labels:
        for row, colour in zip(sorted((r for r in read_json(path)["rows"] if r["variant"] != "noprior"),
                                      key=lambda r: r["variant"] != "real"), ("C0", "C1")):
            v = [100 * m for m in row["miou"]]
            ax.errorbar([row["n_real"]], [np.mean(v)], yerr=[[np.mean(v) - min(v)], [max(v) - np.mean(v)]],
                        marker="s", mfc="none", color=colour, capsize=3, linestyle="none",
                        label=("real only, " if row["variant"] == "real" else "+ synthetic, ")
                        + f"the same {row['n_real']} people for refiner, bank, parser")
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("real labelled people (CCP train split)")
    ax.set_ylabel("val mIoU (%), mean and range of seeds")
    ax.set_title(f"CCP val, parser trained {args.steps} steps")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
