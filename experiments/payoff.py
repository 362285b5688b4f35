"""Which synthetic people help a parser, and under which schedule (docs/results.md, levers 2 and 5).

    python experiments/payoff.py --synthetic ccp=data/runs/ccp/synth/ccp lsp=data/runs/ccp/synth/lsp \\
        --rows all_real_1500 all_both_1500 --seeds 0 1 --runs data/exp/payoff --out docs/results/payoff.json

Every row is one parser configuration trained on the CCP train split and scored on its val
split: ``N_SOURCES_STEPS[_rf75]``, where ``N`` is ``all`` or a number of real people,
``SOURCES`` is ``real`` (no synthetic people), ``both`` or one named synthetic source, and
``STEPS`` the optimizer steps in all (batch 8; mixed rows fine-tune the last third on real
labels only, or the last F steps with ``_ftF``, and mix real and synthetic half and half
before that, or P % real with ``_rfP``: ``_rf75`` 3:1, ``_rf0`` synthetic only);
``_synK`` draws a random subset of K synthetic people (by the run's seed; default all);
``_soft`` trains on the synthetic labels' soft targets (``_softT2``: at temperature 2; the
sources need saved probabilities); ``_ms`` resizes each synthetic photo to the real people's
scale (``match_person_scale``); an ``_ssnan``, ``_attention`` or ``_decoder`` suffix
trains that parser instead of the DeepLab, a number after it sets its head width
(``_decoder64``: 64 channels; default the profile's 128); ``_lite0`` (``_lite1``, ``_lite2``)
after it starts the parser from an ImageNet EfficientNet-Lite encoder at output stride 16, and
``_elrP`` trains that encoder at P % of the learning rate (default 100).
Finished runs are reused (each run folder holds its metrics.json), so the command resumes.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

import numpy as np

from parser_net.config import ParserTrainConfig
from parser_net.train import load_pool, train_parser
from pipeline.formats.files import read_json, write_json

ROW = re.compile(r"^(?P<n>all|\d+)_(?P<sources>[a-z+]+)_(?P<steps>\d+)(?:_rf(?P<rf>\d+))?(?:_ft(?P<finetune>\d+))?"
                 r"(?:_syn(?P<n_synthetic>\d+))?"
                 r"(?:_soft(?:T(?P<temperature>\d+(?:\.\d+)?))?(?P<soft>))?"
                 r"(?:_(?P<ms>ms))?"
                 r"(?:_(?P<arch>ssnan|attention|decoder)(?P<head_width>\d+)?)?"
                 r"(?:_lite(?P<lite>[012])(?:_elr(?P<elr>\d+))?)?$")


def row_config(name: str, seed: int, sources: dict[str, str], args) -> ParserTrainConfig:
    """The ParserTrainConfig of row ``name`` (see the module docstring) for ``seed``."""
    m = ROW.match(name)
    if not m:
        raise SystemExit(f"bad row name {name!r}: expected N_SOURCES_STEPS[_rfP][_ftF][_synK][_soft[TN]][_ms][_ARCH][_liteL[_elrP]], "
                         "e.g. all_both_1500")
    picked = {"real": (), "both": tuple(sources.values())}.get(m["sources"])
    if picked is None:
        picked = tuple(sources[s] for s in m["sources"].split("+"))
    steps = int(m["steps"])
    finetune = int(m["finetune"]) if m["finetune"] else steps // 3
    return ParserTrainConfig(
        data=str(Path(args.data_root) / "ccp"), out_dir=str(Path(args.runs) / f"{name}_s{seed}"), synthetic=picked,
        n_real=None if m["n"] == "all" else int(m["n"]),
        n_synthetic=int(m["n_synthetic"]) if m["n_synthetic"] else None,
        real_fraction=int(m["rf"]) / 100 if m["rf"] else 0.5,
        iterations=steps, finetune_iterations=finetune if picked else 0, seed=seed, subset_seed=seed,
        threads=args.threads, arch=m["arch"] or "deeplab", soft_targets=m["soft"] is not None,
        match_person_scale=m["ms"] is not None,
        soft_temperature=float(m["temperature"] or 1.0),
        head_width=int(m["head_width"]) if m["head_width"] else None,
        **(dict(encoder=f"efficientnet-lite{m['lite']}", output_stride=16,
                encoder_lr_scale=int(m["elr"]) / 100 if m["elr"] else 1.0) if m["lite"] else {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--synthetic", nargs="+", required=True, help="NAME=DIR: the synthetic sources")
    ap.add_argument("--rows", nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", default="data/exp/payoff")
    ap.add_argument("--out", default="docs/results/payoff.json")
    args = ap.parse_args()
    sources = dict(s.split("=", 1) for s in args.synthetic)
    t0, pools, rows = time.time(), {}, []
    for name in args.rows:
        runs = []
        for seed in args.seeds:
            cfg = row_config(name, seed, sources, args)
            metrics_path = Path(cfg.out_dir) / "metrics.json"
            if not metrics_path.exists():
                key = (tuple(cfg.synthetic), cfg.soft_targets, cfg.match_person_scale)
                if key not in pools:
                    pools[key] = load_pool(cfg.data, key[0], cfg.label_set, round(cfg.size * cfg.scale_range[1]),
                                           soft_targets=cfg.soft_targets, match_person_scale=cfg.match_person_scale)
                train_parser(cfg, pools[key])
            runs.append(read_json(metrics_path))
        mious = [r["val"]["mean_iou"] for r in runs]
        rows.append({"row": name, "seeds": args.seeds, "miou": mious, "miou_mean": float(np.mean(mious)),
                     "iou_mean": {c: float(np.nanmean([r["val"]["iou"][c] or np.nan for r in runs]))
                                  for c in runs[0]["val"]["iou"]},
                     "n_real": runs[0]["config"]["n_real"], "n_synthetic": runs[0]["config"]["n_synthetic"],
                     "config": runs[0]["config"]["train"], "train_seconds": [r["train_seconds"] for r in runs]})
        print(f"{name:>24}: mIoU {100 * rows[-1]['miou_mean']:.1f} ({' / '.join(f'{100 * v:.2f}' for v in mious)})",
              flush=True)
    write_json(args.out, {"rows": rows, "args": vars(args), "wall_seconds": time.time() - t0,
                          "machine": f"{platform.machine()} {platform.processor() or ''}, threads {args.threads}"})
    print(json.dumps({"wrote": args.out, "wall_seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
