"""Joint parsing + pose on the mixed data (docs/results.md, 'Joint parsing + pose'): parsing mIoU on the CCP val
split and PCK@0.2 on the LSP test half (im1001-im2000, ground-truth joints, never trained on).

    python experiments/joint_table.py --data-root ../shared/data \\
        --synthetic data/synth/ccp_kp data/synth/lsp --out docs/results/joint_table.json

Rows (same number of steps each): parser alone; parser + structure-sensitive loss; joint
network on the real CCP people (labels + BlazePose keypoints); joint network + synthetic
people (CCP 1005-2098 with BlazePose keypoints, LSP im0001-im1000 with ground-truth joints;
LSP's test half is removed from the synthetic set); SS-NAN's rows (``ssnan``, ``ssnan +
joint loss``); the Parsing Induced Learner and its ablations (``pose pil``, ``pose self``,
...: :mod:`parser_net.pil`) on the data of the joint + synthetic row.  Finished runs are
reused.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.formats.files import read_json, write_json
from parser_net.config import ParserTrainConfig
from parser_net.train import load_pool, train_parser

ROWS = {
    "parser": dict(model="parser"),
    "parser + structure loss": dict(model="parser", structure_loss=True),
    "joint": dict(model="joint"),
    "joint + synthetic": dict(model="joint", synthetic=True),
    # SS-NAN's ablation: the parser row, + neural aggregation, + the self-supervised joint loss
    "ssnan": dict(model="parser", arch="ssnan"),
    "ssnan + joint loss": dict(model="parser", arch="ssnan", structure_loss=True),
    # the Parsing Induced Learner's Table 1, on the data of "joint + synthetic"
    **{f"pose {a}": dict(model="joint", joint_arch=a, synthetic=True)
       for a in ("pose", "self", "add", "multi", "concat", "mtl", "pil")},
    # HTCorrM: each task alone, concatenation and HNL fusion, for each main task
    **{f"htcorrm {m} {f}": dict(model="joint", joint_arch="htcorrm", main_task=m, fusion=f, synthetic=True)
       for m in ("parsing", "pose", "edge") for f in ("none", "concat", "hnl")},
    # does the encoder-decoder parsing head alone gain from the synthetic people?
    "htcorrm parsing none real only": dict(model="joint", joint_arch="htcorrm", main_task="parsing", fusion="none"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--synthetic", nargs="+", default=["data/synth/ccp_kp", "data/synth/lsp"])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--finetune", type=int, default=500, help="final steps on real labels only (mixed rows)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", default="data/exp/joint_table")
    ap.add_argument("--out", default="docs/results/joint_table.json")
    args = ap.parse_args()
    root = Path(args.data_root)
    t0 = time.time()
    pool = load_pool(str(root / "ccp"), tuple(args.synthetic), "ccp8", 200, str(root / "lsp"), "test")
    print(f"{len(pool.real)} real, {len(pool.synthetic)} synthetic (LSP test half removed), "
          f"{len(pool.val)} parsing val, {len(pool.pose_val)} pose val", flush=True)
    results = []
    for name in args.rows:
        spec = dict(ROWS[name])
        mixed = spec.pop("synthetic", False)
        for seed in args.seeds:
            out = Path(args.runs) / f"{name.replace(' + ', '_').replace(' ', '_')}_s{seed}"
            cfg = ParserTrainConfig(
                data=str(root / "ccp"), out_dir=str(out), synthetic=tuple(args.synthetic) if mixed else (),
                iterations=args.iterations, finetune_iterations=args.finetune if mixed else 0, width=16,
                blocks=(1, 1, 1, 1), size=160, seed=seed, subset_seed=seed, threads=args.threads,
                pose_data=str(root / "lsp"), pose_split="test", **spec)
            if not (out / "metrics.json").exists():
                t = time.time()
                train_parser(cfg, pool)
                print(f"{name} seed {seed}: {time.time() - t:.0f} s", flush=True)
            m = read_json(out / "metrics.json")
            results.append({"row": name, "seed": seed, "miou": m.get("val", {}).get("mean_iou"),
                            "pck": m.get("pose", {}).get("pck"), "pck_per_joint": m.get("pose", {}).get("per_joint"),
                            "edges": m.get("edges"), "train_seconds": m["train_seconds"],
                            "config": m["config"]["train"]})
            r = results[-1]
            print(f"{name:>24} seed {seed}:" + (f" mIoU {100 * r['miou']:.1f}" if r["miou"] is not None else "")
                  + (f", PCK@0.2 {100 * r['pck']:.1f}" if r["pck"] is not None else "")
                  + (f", edge ODS {r['edges']['ods']:.3f}" if r["edges"] else "")
                  + f" ({r['train_seconds']:.0f} s)", flush=True)
    write_json(args.out, {"rows": results, "args": vars(args), "wall_seconds": time.time() - t0})
    print(json.dumps({"wrote": args.out, "wall_seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
