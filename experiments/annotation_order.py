"""Does correcting pre-annotations in confidence order save annotation effort?

    python experiments/annotation_order.py --runs data/exp/annotation --out docs/results/annotation_order.json \\
        --png docs/annotation_order_ccp.png

A simulation on CCP: ``--held-out`` labelled train people (drawn with seed 0) play
keypoint-only people; a refiner is trained on the remaining train people (the bank) and
synthesizes them (``relabel``: their labels are ignored), giving each a confidence.  An
annotator then "corrects" the first m of them (their ground truth is imported) either in
confidence order (lowest first, what ``export --order confidence`` gives) or in random
order (one order per ``--seeds`` value); the corrected people join the bank, and the val
split's priors (k = 3, crop ``--size``) are scored.  With ``--refiner-ms`` the refiner is
also retrained on bank + corrected people at those m and its val mIoU on crops reported:
for each seed s, the confidence order and random order s, both with refiner seed s.

Annotation effort per corrected person: the share of the person's pixels (union of the
synthetic and the true foreground) whose class the correction changed.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import matplotlib
import numpy as np
from scipy.stats import spearmanr

from pipeline.formats import files
from pipeline.formats.files import read_json, write_json
from pipeline.readers.layouts import iter_records
from pipeline.priors.bank import PriorConfig
from pipeline.priors.evaluate import evaluate_split
from pipeline.formats.folder import DATASET_FILE, FORMAT, PEOPLE_FILE, keypoints_to_json
from refine_net.config import RefinerTrainConfig, SynthConfig
from refine_net.synthesize import Synthesizer
from refine_net.train import fit_refiner

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write_folder(out: Path, people: list, label_set: str, split: str | None = None) -> Path:
    """A partsynth folder of labelled people (label PNGs, keypoints; ``split`` overrides
    theirs); rewritten only when missing."""
    if (out / PEOPLE_FILE).is_file():
        return out
    entries = []
    for r in people:
        rel = f"labels/{r.person_id}.png"
        files.write_label_png(out / rel, r.label_map)
        entries.append({"person_id": r.person_id, "image": str(Path(r.image_path).resolve()), "label": rel,
                        "keypoints": keypoints_to_json(r.keypoints), "split": split or r.split})
    write_json(out / DATASET_FILE, {"format": FORMAT, "label_set": label_set, "synthetic": False})
    write_json(out / PEOPLE_FILE, entries)
    return out


def refiner_val_miou(cfg: RefinerTrainConfig) -> float:
    """Train (or reuse) a refiner run; its last epoch's val mIoU on crops."""
    fit_refiner(cfg)
    return read_json(Path(cfg.out_dir) / "history.json")[-1]["val_miou"]


def refiner_points(args, base: RefinerTrainConfig, runs: Path, orders: dict, label_set: str) -> dict:
    """The refiner retrained on bank + the first m corrected people, for every m of
    ``args.refiner_ms`` and seed s of ``args.seeds``: the confidence order and random order s,
    both with refiner seed s (m = 0, and m = all, are one training per seed).  Returns
    {"confidence" | "random": [{"m", "seed", "refiner_miou"}, ...]}."""
    trained: dict = {}
    points: dict[str, list] = {"confidence": [], "random": []}
    for seed in args.seeds:
        for order in ("confidence", "random"):
            people = orders["confidence" if order == "confidence" else f"random {seed}"]
            for m in args.refiner_ms:
                key = (frozenset(p["person_id"] for p in people[:m]), seed)
                if key not in trained:
                    tag = "m0" if m == 0 else ("all" if m >= len(people) else f"{order}_m{m}")
                    update = {"seed": seed, "out_dir": str(runs / f"refiner_{tag}_s{seed}")}
                    if m:
                        extra = write_folder(runs / f"corrected_{order}{seed}_m{m}",
                                             [p["record"] for p in people[:m]], label_set, split="train")
                        update["extra_data"] = (str(extra),)
                    if m == 0 and seed == base.seed:
                        update["out_dir"] = base.out_dir
                    trained[key] = refiner_val_miou(base.model_copy(update=update))
                points[order].append({"m": m, "seed": seed, "refiner_miou": trained[key]})
                print(f"refiner, {order} order, seed {seed}, m={m:>3}: {100 * trained[key]:.2f}", flush=True)
    return points if args.refiner_ms else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/ccp")
    ap.add_argument("--held-out", type=int, default=200)
    ap.add_argument("--ms", type=int, nargs="+", default=[0, 25, 50, 100, 150, 200])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random orders")
    ap.add_argument("--refiner-ms", type=int, nargs="*", default=[])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", default="data/exp/annotation")
    ap.add_argument("--out", default="docs/results/annotation_order.json")
    ap.add_argument("--png", default="docs/annotation_order_ccp.png")
    args = ap.parse_args()
    t0, runs = time.time(), Path(args.runs)
    recs = [r for r in iter_records(args.data) if r.label_map is not None and r.keypoints is not None]
    label_set = recs[0].label_set
    train = [r for r in recs if r.split == "train"]
    val = [r for r in recs if r.split == "val"]
    pick = set(np.random.default_rng(0).permutation(len(train))[: args.held_out].tolist())
    held = [r for i, r in enumerate(train) if i in pick]
    bank = [r for i, r in enumerate(train) if i not in pick]
    bank_dir = write_folder(runs / "bank", bank + val, label_set)
    base = RefinerTrainConfig(data=str(bank_dir), out_dir=str(runs / "refiner_m0"), epochs=args.epochs,
                              threads=args.threads, size=args.size)
    base_miou = refiner_val_miou(base)
    held_dir = write_folder(runs / "held_out", held, label_set, split="train")
    synth_dir = runs / "held_out_synth"
    synth = Synthesizer(SynthConfig(checkpoint=str(Path(base.out_dir) / "last.pt"), data=str(held_dir),
                                    out=str(synth_dir), relabel=True, threads_per_task=args.threads))
    synth.run(iter_records(held_dir), synth_dir)
    synth.finalize(synth_dir)
    synthetic = {r.person_id: r for r in iter_records(synth_dir) if r.label_map is not None}
    people = []
    for r in held:
        s = synthetic.get(r.person_id)
        if s is None:
            continue
        union = (s.label_map > 0) | (r.label_map > 0)
        changed = (s.label_map != r.label_map) & union
        people.append({"person_id": r.person_id, "confidence": s.meta["mean_max_prob"],
                       "effort": float(changed.sum() / max(1, union.sum())), "record": r})
    orders = {"confidence": sorted(people, key=lambda p: p["confidence"])}
    for seed in args.seeds:
        orders[f"random {seed}"] = [people[i] for i in np.random.default_rng(100 + seed).permutation(len(people))]
    prior_cfg = PriorConfig(size=args.size, k=3)
    curves = {}
    for name, order in orders.items():
        curve = []
        for m in args.ms:
            corrected = [p["record"] for p in order[:m]]
            scores, _ = evaluate_split(bank + corrected, val, prior_cfg, [3])
            point = {"m": m, "prior_miou": float(scores["k=3"].mean_iou),
                     "effort_mean": float(np.mean([p["effort"] for p in order[:m]])) if m else 0.0,
                     "pixels_changed": float(np.sum([p["effort"] for p in order[:m]]))}
            curve.append(point)
            print(f"{name:>12} m={m:>3}: prior mIoU {100 * point['prior_miou']:.2f}, effort per person "
                  f"{100 * point['effort_mean']:.1f} %", flush=True)
        curves[name] = curve
    refiner_curves = refiner_points(args, base, runs, orders, label_set)
    write_json(args.out, {
        "held_out": len(people), "bank": len(bank), "val": len(val), "refiner_m0_val_miou": base_miou,
        "refiner_curves": refiner_curves,
        "confidence_vs_effort_spearman": float(spearmanr([p["confidence"] for p in people],
                                                         [p["effort"] for p in people]).statistic),
        "curves": curves, "people": [{k: v for k, v in p.items() if k != "record"} for p in people],
        "args": vars(args), "wall_seconds": time.time() - t0, "machine": platform.machine()})
    fig, axes = plt.subplots(1, 3 if refiner_curves else 2, figsize=(15 if refiner_curves else 10, 4), dpi=120)
    rand = np.array([[pt["prior_miou"] for pt in curves[f"random {s}"]] for s in args.seeds]) * 100
    axes[0].plot(args.ms, [100 * pt["prior_miou"] for pt in curves["confidence"]], "o-", label="confidence order")
    axes[0].errorbar(args.ms, rand.mean(0), yerr=[rand.mean(0) - rand.min(0), rand.max(0) - rand.mean(0)],
                     marker="s", capsize=3, label=f"random order ({len(args.seeds)} seeds)")
    axes[0].set(xlabel="people corrected (m)", ylabel="val prior mIoU (%)", title="priors with the corrected people")
    effort = np.array([[pt["pixels_changed"] for pt in curves[f"random {s}"]] for s in args.seeds])
    axes[1].plot(args.ms, [pt["pixels_changed"] for pt in curves["confidence"]], "o-", label="confidence order")
    axes[1].plot(args.ms, effort.mean(0), "s-", label="random order (mean)")
    axes[1].set(xlabel="people corrected (m)", ylabel="people's worth of pixels changed",
                title="annotation effort")
    for order, points in refiner_curves.items():
        ms = sorted({pt["m"] for pt in points})
        vals = np.array([[100 * pt["refiner_miou"] for pt in points if pt["m"] == m] for m in ms])
        axes[2].errorbar(ms, vals.mean(1), yerr=[vals.mean(1) - vals.min(1), vals.max(1) - vals.mean(1)],
                         marker="o" if order == "confidence" else "s", capsize=3,
                         label=f"{order} order ({vals.shape[1]} seeds)")
    if refiner_curves:
        axes[2].set(xlabel="people corrected (m)", ylabel="refiner val mIoU (%, crops)",
                    title="refiner retrained with the corrected people")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
