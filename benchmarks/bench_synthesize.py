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

from pipeline.labels import LABEL_SETS
from pipeline.layouts import iter_records, keypoint_only_people
from pipeline.priors.bank import PriorConfig
from refine_net.checkpoint import Checkpoint, save_checkpoint
from refine_net.config import RefinerTrainConfig, SynthConfig
from refine_net.model import RefineConfig, UNet
from refine_net.synthesize import Synthesizer


def untrained_checkpoint(path: Path, bank: str, profile: str) -> Path:
    """A refiner checkpoint with random weights of ``profile``'s sizes (speed only)."""
    train = RefinerTrainConfig(data=str(Path(bank).resolve()), out_dir=str(path.parent), profile=profile)
    label_set = next(r.label_set for r in iter_records(bank) if r.label_map is not None)
    cfg = RefineConfig(num_classes=LABEL_SETS[label_set].num_classes, base_filters=train.base_filters,
                       depth=train.depth)
    network = {"refine": asdict(cfg), "prior": asdict(PriorConfig(size=train.size)), "bank_data": train.data}
    return save_checkpoint(path, Checkpoint(kind="refiner", config=train.model_dump(mode="json"), network=network,
                                            label_set=label_set, model=UNet(cfg).state_dict()))


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
            synth = Synthesizer(SynthConfig(checkpoint=str(ckpt), data=args.people, out=tmp, bank_split=None))
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
