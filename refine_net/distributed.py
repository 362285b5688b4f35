"""Training on several processes and in mixed precision, for both networks.

Data parallel: started by ``torchrun`` (PyTorch's launcher sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), each process (rank) wraps the network in
:class:`torch.nn.parallel.DistributedDataParallel` (NCCL on GPUs, one GPU per rank; Gloo
on CPUs), takes its share of every global batch and DDP averages the gradients.  Rank 0
alone writes checkpoints, logs, reports and progress; every rank can resume from any
checkpoint, whatever number of ranks wrote it.  Batch normalisation keeps per-rank
statistics, as in any DDP run without SyncBatchNorm; a one-process run with
``--accumulate N`` sees the same micro-batches as N ranks and ends with the same weights.

Mixed precision (``--amp``): ``bf16`` or ``fp16`` autocast of the forward pass and loss
(:func:`torch.autocast`), with a gradient scaler for ``fp16``
(:class:`torch.amp.GradScaler`); the weights and optimizer stay float32.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.errors import ConfigError
from refine_net.device import resolve_device

#: ``--amp`` values and the autocast dtype of each
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files and logs (rank 0)."""
        return self.rank == 0


def launched_world() -> World:
    """The world ``torchrun`` describes in the environment (rank 0 of 1 without it).
    Raises ConfigError for values that are not integers or a rank outside the world."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ConfigError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them): {e}") from None
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK {rank} is not a rank of WORLD_SIZE {size}")
    return World(rank, size, local)


def init_world(device_name: str) -> tuple[World, torch.device]:
    """Join the run's process group (when started by torchrun with more than one process)
    and pick this rank's device: ``cuda:LOCAL_RANK`` on GPUs (NCCL), the CPU otherwise (Gloo).

    Returns: (world, device).  Raises ConfigError as :func:`refine_net.device.resolve_device`."""
    world = launched_world()
    device = resolve_device(device_name)
    if world.size == 1:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def close_world(world: World) -> None:
    """Leave the process group joined by :func:`init_world` (no-op for one process)."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if world.size > 1:
        dist.barrier()


def agree(world: World, flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any (a decision all ranks must share, such
    as stopping on a time budget); ``flag`` itself for one process."""
    if world.size == 1:
        return flag
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([int(flag)], device=on)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def shares(batch_size: int, world: World, accumulate: int) -> list[range]:
    """This rank's micro-batches of a global batch: positions ``0 .. batch_size-1`` are cut
    into ``world.size * accumulate`` equal parts, rank r taking parts ``r * accumulate`` to
    ``(r + 1) * accumulate - 1``.

    Raises ConfigError when the parts do not divide ``batch_size`` (every rank must see as
    many samples, or DDP's gradient average would weigh them unequally)."""
    parts = world.size * accumulate
    if accumulate < 1 or batch_size % parts:
        raise ConfigError(f"--batch-size {batch_size} does not split into {world.size} rank(s) x {accumulate} "
                          f"micro-batch(es); use a batch size divisible by {parts}")
    per = batch_size // parts
    first = world.rank * accumulate
    return [range((first + i) * per, (first + i + 1) * per) for i in range(accumulate)]


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel for several ranks (rank 0's weights are
    broadcast to all), unchanged for one."""
    if world.size == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (``model`` itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def check_amp(amp: str, device: torch.device) -> None:
    """Raise ConfigError for an unknown ``--amp`` or fp16 on the CPU (its CPU kernels are slow
    and PyTorch's CPU autocast is meant for bf16)."""
    if amp not in AMP_DTYPES:
        raise ConfigError(f"unknown --amp {amp!r}; choose one of {list(AMP_DTYPES)}")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device; on the CPU use --amp bf16")


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``--amp`` on ``device`` (a null context for ``off``)."""
    dtype = AMP_DTYPES[amp]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


class Stepper:
    """One optimizer step over micro-batches, with DDP, accumulation and mixed precision.

    Args:
        model: the network, wrapped by :func:`wrap`.
        optimizer: its optimizer.
        amp: ``off``, ``bf16`` or ``fp16`` (gradient scaling for fp16).
        device: where the model runs.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, amp: str, device: torch.device):
        check_amp(amp, device)
        self.model, self.optimizer, self.amp, self.device = model, optimizer, amp, device
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def step(self, micro_losses: Sequence[Callable[[], torch.Tensor]], seeds: Sequence[int] | None = None) -> float:
        """Run each callable (forward + loss of one micro-batch, under autocast), backward
        its loss / len(micro_losses) (DDP averages over the ranks at the last one), then
        step.  ``seeds``: torch's seed before each micro-batch (:func:`micro_seed`), so that
        its dropout masks do not depend on which rank runs it.  Returns the mean loss of this
        rank's micro-batches."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total, n = 0.0, len(micro_losses)
        for i, compute in enumerate(micro_losses):
            if seeds is not None:
                torch.manual_seed(seeds[i])
            sync = i == n - 1 or not isinstance(self.model, DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with autocast(self.amp, self.device):
                    loss = compute()
                self.scaler.scale(loss.float() / n).backward()
            total += float(loss.detach())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total / n


def micro_seed(*key: int) -> int:
    """A torch seed that is a pure function of ``key`` (e.g. run seed, step, micro-batch
    position in the global batch)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0] >> 1)
