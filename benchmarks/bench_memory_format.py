"""Parser training steps per second on the CPU for three memory formats of the input and
network: contiguous NCHW (what partsynth feeds since torch 2.13's oneDNN convolution
backward corrupted the heap on a channels-last input to the joint network), a
channels-last input view into an NCHW network (what it fed before), and both channels-last.

    python benchmarks/bench_memory_format.py --kinds parser joint --threads 2

CPU profile sizes (width 16, blocks 1-1-1-1, ASPP head 128), batch 8, 160 x 120 crops,
cross-entropy + Adam, 3 warm-up steps, then ``--steps`` timed steps.
"""
from __future__ import annotations

import argparse
import time

import torch

from parser_net.config import ParserTrainConfig
from parser_net.networks import build_network, network_record


def steps_per_second(kind: str, mode: str, steps: int) -> float:
    torch.manual_seed(0)
    cfg = ParserTrainConfig(data="-", out_dir="-")
    model = build_network(network_record(kind, "deeplab", cfg.parser_config(8), cfg.joint_stages, cfg.size))
    if mode == "channels-last both":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.randn(8, *cfg.crop_hw, 3).permute(0, 3, 1, 2)            # (B, 3, H, W) view of NHWC data
    x = {"NCHW": x.contiguous(), "channels-last input": x,
         "channels-last both": x.contiguous(memory_format=torch.channels_last)}[mode]
    y = torch.randint(0, 8, (8, *cfg.crop_hw))
    for i in range(3 + steps):
        if i == 3:
            t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x)["parsing"], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=["parser", "joint"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for kind in args.kinds:
        for mode in ("NCHW", "channels-last input", "channels-last both"):
            print(f"{kind:>6} | {mode:<20} | {steps_per_second(kind, mode, args.steps):.2f} steps/s", flush=True)


if __name__ == "__main__":
    main()
