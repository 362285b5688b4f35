"""Parser inference speed: images per second at 320 px, torch eager vs ONNX Runtime (vs
torch.compile), network only and end to end (``partsynth predict``'s Predictor).

    python benchmarks/bench_predict.py --photos ../shared/data/ccp --n 60 --repeats 3
    python benchmarks/bench_predict.py --profiles cpu --arch decoder --encoders scratch efficientnet-lite0

Uses untrained parsers of the cpu and gpu profiles' sizes (speed does not depend on the
weights) fed at a 320 px long side (320 x 240, batch 1), 2 threads.  "network" times the
forward pass alone on a fixed input; "predict" runs :class:`parser_net.predict.Predictor`
(read photo, resize, forward, upsample to the photo, argmax, write the label PNG and the
record) on the first --n photos of --photos, at each of --batch-sizes photos per forward pass.  Each figure is the median of --repeats runs,
with the spread (min-max) beside it.  ``--encoders`` adds rows per encoder (pretrained ones
at output stride 16, as the main job trains them).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from parser_net.config import ParserTrainConfig
from parser_net.export import export_checkpoint
from parser_net.networks import build_network, network_record
from parser_net.predict import Predictor
from pipeline.labels import LABEL_SETS
from pipeline.readers.layouts import list_photos
from refine_net.checkpoint import Checkpoint, save_checkpoint


def untrained_parser(path: Path, profile: str, size: int, arch: str = "deeplab", encoder: str = "scratch") -> Path:
    """A parser checkpoint with random weights of ``profile``'s sizes, fed at ``size`` px."""
    cfg = ParserTrainConfig(data=".", out_dir=str(path.parent), profile=profile, size=size, arch=arch,
                            encoder=encoder, output_stride=8 if encoder == "scratch" else 16)
    pcfg = cfg.parser_config(LABEL_SETS[cfg.label_set].num_classes)
    network = network_record("parser", cfg.arch, pcfg, 1, size)
    model = build_network(network)
    return save_checkpoint(path, Checkpoint(kind="parser", config=cfg.model_dump(mode="json"), network=network,
                                            label_set=cfg.label_set, model=model.state_dict()))


def rate(fn, n: int, repeats: int) -> tuple[float, float, float]:
    """(median, min, max) of n / seconds over ``repeats`` timed runs of ``fn`` (after one warm-up)."""
    fn()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates), min(rates), max(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default="../shared/data/ccp")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--profiles", nargs="+", default=["cpu", "gpu"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="photos per forward pass in predict")
    ap.add_argument("--arch", default="deeplab", help="parser architecture (train-parser --arch)")
    ap.add_argument("--encoders", nargs="+", default=["scratch"], help="encoders (train-parser --encoder)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (inductor, needs a C compiler)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    photos = list_photos(args.photos)[: args.n]
    print(f"{args.threads} threads; {args.size} px; {len(photos)} photos of {args.photos}")
    with tempfile.TemporaryDirectory() as tmp:
        for profile, encoder in ((p, e) for p in args.profiles for e in args.encoders):
            ckpt = untrained_parser(Path(tmp) / f"{profile}-{encoder}.pt", profile, args.size, args.arch, encoder)
            onnx = Path(tmp) / f"{profile}-{encoder}.onnx"
            profile = f"{profile} {args.arch} {encoder}"
            meta = export_checkpoint(ckpt, onnx)
            print(f"[{profile}] exported: max abs diff to torch {meta['max_abs_diff']:.2e}")
            x = torch.randn(1, 3, args.size, round(args.size * 3 / 4))
            engines = {"torch": Predictor(ckpt), "onnx": Predictor(onnx, engine="onnx", threads=args.threads)}
            models = {name: p.model for name, p in engines.items()}
            if args.compile:
                models["torch.compile"] = torch.compile(engines["torch"].model)
            for name, model in models.items():
                with torch.no_grad():
                    med, lo, hi = rate(lambda: [model(x) for _ in range(10)], 10, args.repeats)
                print(f"[{profile}] network, {name}: {med:.1f} images/s ({lo:.1f}-{hi:.1f})")
            for name, pred in engines.items():
                for batch in args.batch_sizes:
                    pred.batch_size = batch
                    out = Path(tmp) / f"{profile.replace(' ', '-')}-{name}"
                    med, lo, hi = rate(lambda: pred.process_images(photos, out, force=True), len(photos), args.repeats)
                    print(f"[{profile}] predict, {name}, batch {batch}: {med:.1f} photos/s ({lo:.1f}-{hi:.1f})")


if __name__ == "__main__":
    main()
