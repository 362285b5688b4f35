"""Synthetic labels made with N labelled people only: the refiner with and without the
pose prior, trained on the parser's own N people (docs/results.md, lever 6).

    python experiments/refiner_at_n.py --n 100 --variants real prior noprior --seeds 0 1 2 \\
        --person-masks data/runs/ccp/keypoints/ccp --runs data/exp/refiner_at_n --out docs/results/refiner_at_n100.json

The curve over N (``payoff.py``) gives its parsers N real people but synthetic labels from
the main job's refiner, which saw all 601 labelled train people (and used them as its
prior bank).  Here N CCP train people are drawn once (``--subset-seed``) and are all the
labels anyone sees: they train the refiner and form its bank, the refiner labels CCP's
keypoint-only people (1005-2098, clipped to ``--person-masks`` as the main job does), and
the parser trains on the N real + those synthetic people.  Variants: ``real`` (N real
people only), ``prior`` (refiner on image + prior, the method), ``noprior`` (the
image-only refiner, ``--no-prior``: what the pose prior is worth at this N).  Parser
seeds change the network's initialisation and batches, not the N people; ``--arch`` and
``--head-width`` pick the parser (default the DeepLab, as ``train-parser``).  Finished runs
are reused, so the command resumes; variants may run in separate processes.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from annotation_order import write_folder
from parser_net.config import ParserTrainConfig
from parser_net.networks import PARSERS
from parser_net.train import load_pool, train_parser
from pipeline.formats.files import read_json, write_json
from pipeline.readers.layouts import iter_records, keypoint_only_people
from refine_net.config import RefinerTrainConfig, SynthConfig
from refine_net.synthesize import Synthesizer
from refine_net.train import fit_refiner
from refine_net.train import training_summary


def synthesize(args, refiner: Path, bank: Path, out: Path) -> Path:
    """The keypoint-only people of ``args.keypoint_only`` labelled by ``refiner`` with
    ``bank``'s train people as the prior bank (reused when finished)."""
    if not (out / "dataset.json").is_file():
        s = Synthesizer(SynthConfig(checkpoint=str(refiner), data=args.keypoint_only, out=str(out),
                                    bank_data=str(bank), bank_split="train", person_masks=args.person_masks,
                                    mirror_average=args.mirror_average, threads_per_task=args.threads))
        s.run(keypoint_only_people(args.keypoint_only), out)
        s.finalize(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/ccp")
    ap.add_argument("--keypoint-only", default="../shared/data/ccp")
    ap.add_argument("--person-masks", default=None, help="keypoints folder with the photos' person masks")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--subset-seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=["real", "prior", "noprior"],
                    choices=["real", "prior", "noprior"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="parser seeds")
    ap.add_argument("--refiner-epochs", type=int, default=60)
    ap.add_argument("--iterations", type=int, default=1500)
    ap.add_argument("--mirror-average", action="store_true", help="synthesize --mirror-average")
    ap.add_argument("--arch", default="deeplab", choices=sorted(PARSERS), help="the parser (train-parser --arch)")
    ap.add_argument("--head-width", type=int, default=None, help="its head width (default: the profile's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="data/exp/refiner_at_n")
    ap.add_argument("--out", default="docs/results/refiner_at_n.json")
    args = ap.parse_args()
    t0, runs = time.time(), Path(args.runs) / f"n{args.n}_subset{args.subset_seed}"
    recs = [r for r in iter_records(args.data) if r.label_map is not None and r.keypoints is not None]
    train = [r for r in recs if r.split == "train"]
    picked = sorted(np.random.default_rng(args.subset_seed).permutation(len(train))[: args.n].tolist())
    data = write_folder(runs / "labelled", [train[i] for i in picked] + [r for r in recs if r.split == "val"],
                        recs[0].label_set)
    rows = []
    parser_name = "parser" if args.arch == "deeplab" else f"parser_{args.arch}{args.head_width or ''}"
    for variant in args.variants:
        synthetic: tuple[str, ...] = ()
        refiner_info = None
        if variant != "real":
            rcfg = RefinerTrainConfig(data=str(data), out_dir=str(runs / f"refiner_{variant}"),
                                      epochs=args.refiner_epochs, loss="ce", use_prior=variant == "prior",
                                      threads=args.threads)
            checkpoint = fit_refiner(rcfg)
            refiner_info = dict(training_summary(rcfg.out_dir), train_seconds=float(sum(
                h["seconds"] for h in read_json(Path(rcfg.out_dir) / "history.json"))))
            print(f"refiner {variant}: val crop mIoU {100 * refiner_info['val_miou']:.2f}", flush=True)
            synth_name = f"synth_{variant}" + ("_mirror" if args.mirror_average else "")
            synthetic = (str(synthesize(args, Path(checkpoint), data, runs / synth_name)),)
        mious, seconds, pool = [], [], None
        for seed in args.seeds:
            cfg = ParserTrainConfig(data=str(data), out_dir=str(runs / f"{parser_name}_{variant}_s{seed}"),
                                    synthetic=synthetic, iterations=args.iterations,
                                    finetune_iterations=args.iterations // 3 if synthetic else 0, seed=seed,
                                    subset_seed=seed, threads=args.threads,
                                    arch=args.arch, head_width=args.head_width)
            metrics_path = Path(cfg.out_dir) / "metrics.json"
            if not metrics_path.exists():
                pool = pool or load_pool(cfg.data, synthetic, cfg.label_set, round(cfg.size * cfg.scale_range[1]))
                train_parser(cfg, pool)
            metrics = read_json(metrics_path)
            mious.append(metrics["val"]["mean_iou"])
            seconds.append(metrics["train_seconds"])
        rows.append({"variant": variant, "n_real": args.n, "seeds": args.seeds, "miou": mious,
                     "miou_mean": float(np.mean(mious)), "refiner": refiner_info,
                     "n_synthetic": metrics["config"]["n_synthetic"], "parser_config": metrics["config"]["train"],
                     "train_seconds": seconds})
        print(f"{variant:>8}: mIoU {100 * rows[-1]['miou_mean']:.1f} ({' / '.join(f'{100 * v:.2f}' for v in mious)})",
              flush=True)
    write_json(args.out, {"rows": rows, "args": vars(args), "people": [train[i].person_id for i in picked],
                          "wall_seconds": time.time() - t0,
                          "machine": f"{platform.machine()} {platform.processor() or ''}, threads {args.threads}"})
    print(json.dumps({"wrote": args.out, "wall_seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
