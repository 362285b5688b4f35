"""End-to-end synthesis speed: people per second (prior + refiner inference + paste + write).

    python benchmarks/bench_synthesize.py --bank ../shared/data/ccp --people ../shared/data/lsp \\
        --profiles cpu gpu --counts 200 800
    python benchmarks/bench_synthesize.py --profiles cpu --counts 2000 --flow 2x1 1x2 --dask 1 2
    python benchmarks/bench_synthesize.py --profiles cpu --counts 800 --flow 2x1 --encoder efficientnet-lite0
    python benchmarks/bench_synthesize.py --profiles cpu --counts 400 --flow 2x1 --encoder efficientnet-lite0 \
        --engines torch onnx

Uses an untrained U-Net of each profile's size (speed does not depend on the weights)
unless --checkpoint is given.  Runs synthesis on the first N keypoint-only people for each
N in --counts into a fresh folder and prints people/s and the process's peak RSS after
each, so a flat RSS across N shows that synthesis streams.  ``--flow WxT`` also runs the
``synthesize-labels`` Prefect flow on all of --people (W thread-runner workers, T torch
threads each) against a temporary server, and ``--dask W`` on a local Dask cluster of W
one-thread worker processes; the prior bank is built before the clock starts, as in the
in-process runs.  ``--engines`` repeats every run with each refiner engine (torch, onnx:
ONNX Runtime; the export happens before the clock starts).  Each engine's run first prints
the refiner's forward passes alone (random inputs of its shape, --batch-size people a pass,
--threads threads): the most people a second synthesis could reach with that network.
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
from pipeline.readers.layouts import iter_records, keypoint_only_people
from pipeline.priors.bank import PriorConfig
from refine_net.checkpoint import Checkpoint, save_checkpoint
from refine_net.config import RefinerTrainConfig, SynthConfig
from refine_net.model import RefineConfig, build_refiner
from refine_net.onnx_export import refiner_onnx
from refine_net.synthesize import Synthesizer


def untrained_checkpoint(path: Path, bank: str, profile: str, encoder: str = "scratch") -> Path:
    """A refiner checkpoint with random weights of ``profile``'s sizes (speed only)."""
    train = RefinerTrainConfig(data=str(Path(bank).resolve()), out_dir=str(path.parent), profile=profile,
                               encoder=encoder)
    label_set = next(r.label_set for r in iter_records(bank) if r.label_map is not None)
    cfg = RefineConfig(num_classes=LABEL_SETS[label_set].num_classes, base_filters=train.base_filters,
                       depth=train.depth, encoder=encoder)
    network = {"refine": asdict(cfg), "prior": asdict(PriorConfig(size=train.size)), "bank_data": train.data}
    return save_checkpoint(path, Checkpoint(kind="refiner", config=train.model_dump(mode="json"), network=network,
                                            label_set=label_set, model=build_refiner(cfg).state_dict()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", default="../shared/data/ccp")
    ap.add_argument("--people", default="../shared/data/lsp")
    ap.add_argument("--profiles", nargs="+", default=["cpu", "gpu"])
    ap.add_argument("--counts", type=int, nargs="+", default=[200, 800])
    ap.add_argument("--checkpoint")
    ap.add_argument("--encoder", default="scratch", help="encoder of the untrained refiner (train-refiner --encoder)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=SynthConfig.model_fields["batch_size"].default)
    ap.add_argument("--chunk-size", type=int, default=SynthConfig.model_fields["chunk_size"].default,
                    help="images per flow task (1: one task per image, the flow before chunks)")
    ap.add_argument("--engines", nargs="+", choices=["torch", "onnx"], default=["torch"])
    ap.add_argument("--flow", nargs="*", default=[], metavar="WxT", help="thread-runner flow runs")
    ap.add_argument("--dask", nargs="*", type=int, default=[], metavar="W", help="Dask flow runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    people = keypoint_only_people(args.people)
    print(f"{len(people)} keypoint-only people in {args.people}; bank {args.bank}; {args.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        for profile in args.profiles:
            ckpt = args.checkpoint or untrained_checkpoint(Path(tmp) / f"{profile}.pt", args.bank, profile,
                                                                 args.encoder)
            for engine in args.engines:
                if engine == "onnx":
                    refiner_onnx(ckpt)
                run_engine(args, people, tmp, profile, ckpt, engine)


def run_engine(args, people: list, tmp: str, profile: str, ckpt, engine: str) -> None:
    """The in-process and flow runs of one profile's refiner with one engine."""
    tag = f"{profile}, {engine}"
    t = time.perf_counter()
    synth = Synthesizer(SynthConfig(checkpoint=str(ckpt), data=args.people, out=tmp, bank_split=None,
                                    batch_size=args.batch_size, engine=engine, threads_per_task=args.threads))
    print(f"[{tag}] bank + model loaded in {time.perf_counter() - t:.1f} s")
    n, dt = network_alone(synth)
    print(f"[{tag}] network alone: {n} people in {dt:.1f} s = {n / dt:.1f} people/s (batch {args.batch_size})")
    for n in args.counts:
        out = Path(tmp) / f"{profile}-{engine}-{n}"
        t = time.perf_counter()
        synth.run(people[:n], out)
        synth.finalize(out)
        dt = time.perf_counter() - t
        print(f"[{tag}] {n} people in {dt:.1f} s = {n / dt:.1f} people/s; peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    runs = [("thread", *map(int, wt.split("x"))) for wt in args.flow] + [("dask", w, 1) for w in args.dask]
    for runner, workers, threads in runs:
        cfg = SynthConfig(checkpoint=str(ckpt), data=args.people, out=str(Path(tmp) / f"{profile}-{engine}-{runner}-"
                          f"{workers}x{threads}"), bank_split=None, batch_size=args.batch_size,
                          threads_per_task=threads, chunk_size=args.chunk_size, engine=engine)
        n, dt = flow_run(cfg, runner, workers)
        print(f"[{tag}] flow, {runner} runner, {workers} workers x {threads} threads: {n} people in "
              f"{dt:.1f} s = {n / dt:.1f} people/s")


def network_alone(synth: Synthesizer, people: int = 400) -> tuple[int, float]:
    """(people, seconds) of the refiner's forward passes alone on random inputs float32
    (3 [+ C], S, S), after one warm-up batch: the ceiling of synthesis with that network."""
    classes = len(LABEL_SETS[synth.label_set].names)
    size = synth.prior_cfg.size
    inputs = [torch.rand(3 + (classes if synth.use_prior else 0), size, size) for _ in range(people)]
    synth._refine(inputs[: synth.cfg.batch_size])
    t = time.perf_counter()
    synth._refine(inputs)
    return people, time.perf_counter() - t


def flow_run(cfg: SynthConfig, runner: str, workers: int) -> tuple[int, float]:
    """(people labelled, seconds) of one ``synthesize-labels`` flow run, the bank prebuilt."""
    from flows.server import temporary_server
    from flows.synthesis import bank_for, synthesize_labels, task_runner
    from refine_net.checkpoint import load_checkpoint

    cluster = None
    if runner == "dask":
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with temporary_server():
            bank_for(cfg, load_checkpoint(cfg.checkpoint, kind="refiner"))
            flow = synthesize_labels.with_options(
                task_runner=task_runner(cluster.scheduler_address if cluster else None, workers))
            t = time.perf_counter()
            totals = flow(cfg)
            return totals["people_labelled"], time.perf_counter() - t
    finally:
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
