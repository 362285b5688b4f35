"""End-to-end synthesis speed: people per second (prior + refiner inference + paste + write).

    python benchmarks/bench_synthesize.py --bank ../shared/data/ccp --people ../shared/data/lsp \\
        --profiles cpu gpu --counts 200 800

Uses an untrained U-Net of each profile's size (speed does not depend on the weights)
unless --checkpoint is given.  Runs synthesis on the first N keypoint-only people for each
N in --counts into a fresh folder and prints people/s and the process's peak RSS after
each, so a flat RSS across N shows that synthesis streams.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

from pipeline.layouts import iter_records
from pipeline.prior import PriorConfig
from refine_net.model import RefineConfig, UNet
from refine_net.synthesize import SynthConfig, Synthesizer, keypoint_only_people
from refine_net.train import PROFILES, save_checkpoint


def untrained_checkpoint(path: Path, bank: str, profile: str) -> Path:
    p = PROFILES[profile]
    label_set = next(r.label_set for r in iter_records(bank) if r.label_map is not None)
    from pipeline.labels import LABEL_SETS

    cfg = RefineConfig(num_classes=LABEL_SETS[label_set].num_classes, base_filters=p["base_filters"],
                       depth=p["depth"])
    save_checkpoint(path, model=UNet(cfg).state_dict(), refine_config=asdict(cfg),
                    prior_config=asdict(PriorConfig(size=p["size"])), label_set=label_set,
                    bank_data=bank, train_config={"k": 3, "label_set": None})
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", default="../shared/data/ccp")
    ap.add_argument("--people", default="../shared/data/lsp")
    ap.add_argument("--profiles", nargs="+", default=["cpu", "gpu"])
    ap.add_argument("--counts", type=int, nargs="+", default=[200, 800])
    ap.add_argument("--checkpoint")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    people = keypoint_only_people(args.people)
    print(f"{len(people)} keypoint-only people in {args.people}; bank {args.bank}; {args.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for profile in args.profiles:
            ckpt = args.checkpoint or untrained_checkpoint(Path(tmp) / f"{profile}.pt", args.bank, profile)
            t = time.perf_counter()
            synth = Synthesizer(SynthConfig(checkpoint=str(ckpt)))
            print(f"[{profile}] bank + model loaded in {time.perf_counter() - t:.1f} s")
            for n in args.counts:
                out = Path(tmp) / f"{profile}-{n}"
                t = time.perf_counter()
                synth.run(people[:n], out)
                synth.finalize(out)
                dt = time.perf_counter() - t
                print(f"[{profile}] {n} people in {dt:.1f} s = {n / dt:.1f} people/s; peak RSS "
                      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
