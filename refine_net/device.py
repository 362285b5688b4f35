"""The torch environment of a run: its device (``auto``: CUDA when present, ``cpu`` or
``cuda``), threads and seed.

Shared by both networks (:mod:`parser_net` builds on this package's torch helpers)."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.errors import ConfigError
from refine_net.config import DeviceName


def resolve_device(device: DeviceName | str) -> torch.device:
    """The torch device for ``device``.

    Args:
        device: ``auto`` (``cuda`` when ``torch.cuda.is_available()``, else ``cpu``),
            ``cpu``, ``cuda`` or ``cuda:N``.
    Returns: a :class:`torch.device`.
    Raises: ConfigError for ``cuda`` on a machine without CUDA, or an unknown name.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine (use auto or cpu)")
        return torch.device(device)
    raise ConfigError(f"unknown device {device!r}; choose auto, cpu or cuda")


def setup_run(out_dir: str | Path, threads: int | None, seed: int) -> Path:
    """Create the run folder, set torch's intra-op ``threads`` (None: torch's default) and
    seed.  Returns the run folder (the device comes from
    :func:`refine_net.distributed.init_world`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return out
