"""Training-step cost of every network of the parsing family: seconds per optimizer step
(forward + loss + backward + Adam) and peak memory, on random data.

    python benchmarks/bench_family.py                               # CPU profile, 160 x 120, batch 8
    python benchmarks/bench_family.py --profile gpu --device cuda   # the papers' input sizes, GPU widths
    python benchmarks/bench_family.py --rows decoder --encoders scratch efficientnet-lite0 efficientnet-lite1 \
        efficientnet-lite2                                          # ImageNet encoders vs scratch
    python benchmarks/bench_family.py --rows decoder --amp off bf16     # mixed precision (train-parser --amp)

``--profile cpu`` uses the CPU training profile (width 16, 160 x 120 crops, batch 8), the
setting of docs/results.md's rows.  ``--profile gpu`` uses the GPU profile (width 64,
blocks 2-2-2-2, batch 16) at each paper's input size: 321 x 321 for the parsers and SS-NAN
(DeepLab-v2 / SS-NAN), 256 x 256 for the pose networks (PIL), 384 x 384 for HTCorrM.
Backbones are from scratch unless ``--encoders`` names EfficientNet-Lites (random weights:
speed does not depend on them; output stride 16, as the main job trains them).  Peak memory: CUDA's max allocated for the row
on a GPU; on the CPU the process's peak RSS so far (rows run in the order given, so run one
row per process for a per-row figure).  Each step is the trainers' own
(:class:`refine_net.distributed.Stepper`: autocast under ``--amp``, gradient scaling for fp16).
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from parser_net.config import ParserTrainConfig
from parser_net.htcorrm import edge_targets
from parser_net.joint import joint_loss
from parser_net.losses import parsing_loss
from parser_net.networks import build_network, heatmap_stride, network_outputs, network_record
from refine_net.distributed import Stepper

ROWS = {
    "deeplab": dict(model="parser"), "decoder": dict(model="parser", arch="decoder", head_width=64),
    "attention": dict(model="parser", arch="attention"),
    "ssnan": dict(model="parser", arch="ssnan"), "jppnet": dict(model="joint"),
    **{f"pose {a}": dict(model="joint", joint_arch=a) for a in ("pose", "self", "add", "multi", "concat", "mtl", "pil")},
    **{f"htcorrm {f}": dict(model="joint", joint_arch="htcorrm", fusion=f) for f in ("none", "concat", "hnl")},
}
PAPER_SIZE = {"parser": 321, "pose": 256, "htcorrm": 384}


def step_cost(name: str, spec: dict, profile: str, device: str, steps: int, encoder: str = "scratch",
              amp: str = "off") -> dict:
    """Mean seconds per training step (after 2 warm-up steps) and peak memory of one row."""
    if encoder != "scratch":
        spec = dict(spec, encoder=encoder, output_stride=16)
    cfg = ParserTrainConfig(data="-", out_dir="-", profile=profile, **spec)
    net = network_record(cfg.model, cfg.arch, cfg.parser_config(8), cfg.joint_stages, cfg.size, cfg.joint_arch,
                         cfg.main_task, cfg.fusion)
    model = build_network(net).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if profile == "gpu":
        side = PAPER_SIZE["htcorrm" if cfg.joint_arch == "htcorrm" else "pose" if cfg.model == "joint" else "parser"]
        hw = (side, side)
    else:
        hw = cfg.crop_hw
    b = cfg.batch_size
    x, y = torch.randn(b, 3, *hw, device=device), torch.randint(0, 8, (b, *hw), device=device)
    outputs = network_outputs(net)
    hs = heatmap_stride(net) if "heatmaps" in outputs else 8
    heat = torch.rand(b, 16, hw[0] // hs, hw[1] // hs, device=device)
    edges = edge_targets(y) if "edges" in outputs else None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stepper = Stepper(model, opt, amp, torch.device(device))

    def loss_of():
        out = model(x)
        return (parsing_loss(out, y) if cfg.model == "parser" else
                joint_loss(out, y, heat, torch.ones(b, 16, device=device), torch.ones(b, device=device),
                           edges=edges)["loss"])

    times = []
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        stepper.step([loss_of])
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"row": name, "encoder": encoder, "amp": amp, "input_hw": list(hw), "batch": b, "seconds_per_step": sum(times[2:]) / steps,
            "peak_mib": round(peak, 1), "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--encoders", nargs="+", default=["scratch"], help="encoders (train-parser --encoder)")
    ap.add_argument("--amp", nargs="+", default=["off"], choices=["off", "bf16", "fp16"],
                    help="mixed precision settings (train-parser --amp)")
    ap.add_argument("--out", help="also write the figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    for name, encoder, amp in ((n, e, a) for n in args.rows for e in args.encoders for a in args.amp):
        r = step_cost(name, ROWS[name], args.profile, args.device, args.steps, encoder, amp)
        results.append(r)
        print(f"{name:>16} {encoder:>18} amp {amp:>4}: {r['seconds_per_step']:.3f} s/step at {r['input_hw'][0]}x{r['input_hw'][1]}, batch "
              f"{r['batch']}, peak {r['peak_mib']:.0f} MiB, {r['parameters'] / 1e6:.2f} M parameters", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": results}, f, indent=1)


if __name__ == "__main__":
    main()
