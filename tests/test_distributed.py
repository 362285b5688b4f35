"""Training on several processes (torchrun, DDP over Gloo on the CPU) and in mixed precision."""
import json
import os
import subprocess
import sys

import pytest
import torch

from parser_net.config import ParserTrainConfig
from parser_net.train import load_pool, train_parser
from pipeline.errors import ConfigError
from refine_net.checkpoint import load_checkpoint
from refine_net.config import RefinerTrainConfig
from refine_net.distributed import World, shares
from refine_net.train import epoch_batches, fit_refiner

from conftest import TINY_PARSER, TINY_REFINER

#: DDP sums the ranks' gradients in another order than one process accumulating them
ATOL = 1e-5


def torchrun(*args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node ranks -m flows.cli ARGS`` (the documented command)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(ranks), "-m", "flows.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _weights(path):
    return load_checkpoint(path).model


#: batch-norm buffers: DDP keeps rank 0's running statistics, one process accumulating
#: updates them with every micro-batch
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    learned = [k for k in wa if not k.endswith(BN_BUFFERS)]
    worst = max(float((wa[k].float() - wb[k].float()).abs().max()) for k in learned)
    assert worst < ATOL, worst


def _parser_flags(demo_dir, out, iterations):
    flags = ["train-parser", "--data", str(demo_dir), "--out", str(out), "--iterations", str(iterations),
             "--batch-size", "4"]
    for key, value in TINY_PARSER.items():
        if key in ("batch_size", "threads"):
            continue
        flag = "--" + key.replace("_", "-")
        flags += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, str(value)]
    return flags + ["--threads", "1"]


def _parser_config(demo_dir, out, iterations, **kw):
    tiny = {k: v for k, v in TINY_PARSER.items() if k != "batch_size"}
    return ParserTrainConfig(data=str(demo_dir), out_dir=str(out), iterations=iterations, batch_size=4, **tiny, **kw)


def test_two_ranks_train_a_parser_as_one_process_and_resume_across_world_sizes(demo_dir, tmp_path):
    run = torchrun(*_parser_flags(demo_dir, tmp_path / "ddp", 4))
    assert run.stdout.count("checkpoint:") == 1                       # rank 0 alone reports
    assert run.stderr.count("step 4/4") == 1 and run.stderr.count("val mIoU") == 1
    assert {p.name for p in (tmp_path / "ddp").iterdir()} == {"last.pt", "config.json", "metrics.json"}
    assert load_checkpoint(tmp_path / "ddp" / "last.pt").step == 4

    pool = load_pool(str(demo_dir), (), None, 40)
    one = train_parser(_parser_config(demo_dir, tmp_path / "one", 4, accumulate=2), pool)
    _assert_same_weights(tmp_path / "ddp" / "last.pt", one)

    # a run extended from 2 to 4 steps (its poly schedule changes at the resume) goes on the
    # same whichever world wrote the checkpoint and whichever resumes it
    for name in ("ref", "ddp_then_one", "one_then_ddp"):
        if name == "ddp_then_one":
            torchrun(*_parser_flags(demo_dir, tmp_path / name, 2))
        else:
            train_parser(_parser_config(demo_dir, tmp_path / name, 2, accumulate=2), pool)
        if name == "one_then_ddp":
            torchrun(*_parser_flags(demo_dir, tmp_path / name, 4))
        else:
            train_parser(_parser_config(demo_dir, tmp_path / name, 4, accumulate=2), pool)
    _assert_same_weights(tmp_path / "ref" / "last.pt", tmp_path / "ddp_then_one" / "last.pt")
    _assert_same_weights(tmp_path / "ref" / "last.pt", tmp_path / "one_then_ddp" / "last.pt")
    history = json.loads((tmp_path / "one_then_ddp" / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [2, 4]


def test_two_ranks_train_the_refiner_as_one_process(demo_dir, tmp_path):
    flags = ["train-refiner", "--data", str(demo_dir), "--out", str(tmp_path / "ddp"), "--epochs", "2"]
    for key, value in TINY_REFINER.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    run = torchrun(*flags[:-2], "--threads", "1")
    assert run.stdout.count("checkpoint:") == 1 and run.stderr.count("epoch 2: loss") == 1
    one = fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "one"), epochs=2,
                                         accumulate=2, **TINY_REFINER))
    _assert_same_weights(tmp_path / "ddp" / "last.pt", one)
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1] and "val_miou" in history[1]


def test_batches_split_evenly_or_the_run_is_refused(demo_dir, tmp_path):
    assert shares(8, World(rank=1, size=2), 2) == [range(4, 6), range(6, 8)]
    assert shares(8, World(), 1) == [range(0, 8)]
    with pytest.raises(ConfigError, match="--batch-size 6 does not split into 2 rank"):
        shares(6, World(rank=0, size=2), 2)
    with pytest.raises(ConfigError, match="divisible by 4"):
        fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "r"), epochs=1,
                                       **{**TINY_REFINER, "batch_size": 6}, accumulate=4))
    # a short last batch is cut to a multiple of the parts; every other sample is drawn once
    g = torch.Generator().manual_seed(0)
    batches = epoch_batches(11, 4, 2, g)
    assert [len(b) for b in batches] == [4, 4, 2] and len({i for b in batches for i in b}) == 10
    assert [len(b) for b in epoch_batches(11, 4, 1, g)] == [4, 4, 3]


def test_bf16_autocast_trains_on_the_cpu_and_fp16_is_refused_there(demo_dir, tmp_path):
    pool = load_pool(str(demo_dir), (), None, 40)
    path = train_parser(_parser_config(demo_dir, tmp_path / "bf16", 2, amp="bf16"), pool)
    ckpt = load_checkpoint(path)
    assert all(v.dtype == torch.float32 for v in ckpt.model.values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in ckpt.model.values() if v.is_floating_point())
    assert all(h["loss"] == h["loss"] for h in ckpt.history)          # no NaN
    with pytest.raises(ConfigError, match="--amp fp16 needs a CUDA device"):
        train_parser(_parser_config(demo_dir, tmp_path / "fp16", 2, amp="fp16", device="cpu"), pool)
