"""The one checkpoint format of partsynth's networks (refiner and parsers).

A checkpoint is a ``torch.save`` of a plain dict holding only tensors, numbers, strings,
lists and dicts, so it loads with ``torch.load(weights_only=True)`` (no code runs on
load).  Its fields are those of :class:`Checkpoint`::

    format            "partsynth-checkpoint"
    format_version    1
    kind              "refiner" | "parser"
    package_version   partsynth version that wrote it
    config            the run config, JSON-ready (RefinerTrainConfig / ParserTrainConfig)
    network           the network's own config (RefineConfig / ParserConfig fields, ...)
    label_set         name in pipeline.labels.LABEL_SETS
    step              epochs done (refiner) or optimizer steps done (parser)
    history           per-epoch / per-interval records (loss, seconds, val mIoU)
    model             state dict (CPU tensors)
    optimizer         optimizer state dict, or None
    rng               {"torch": ByteTensor, "cuda": [ByteTensor per device]}

Shared by both networks: :mod:`parser_net` builds on this package's torch helpers.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import CheckpointError, ConfigError
from pipeline.formats.files import atomic_path

FORMAT = "partsynth-checkpoint"
FORMAT_VERSION = 1
KINDS = ("refiner", "parser")


def package_version() -> str:
    """The installed partsynth version (``unknown`` when run from a bare checkout)."""
    try:
        return version("partsynth")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Checkpoint:
    """A network's saved state (see the module docstring for the fields)."""

    kind: str
    config: dict[str, Any]
    network: dict[str, Any]
    label_set: str
    model: dict[str, torch.Tensor]
    step: int = 0
    history: list[dict] = field(default_factory=list)
    optimizer: dict | None = None
    rng: dict = field(default_factory=dict)
    package_version: str = field(default_factory=package_version)
    format_version: int = FORMAT_VERSION


def rng_state() -> dict:
    """torch's CPU RNG state and, when CUDA is present, every device's."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (the CUDA part only where CUDA is present)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` atomically (temp file, then rename); model tensors go to the CPU.
    Returns the path."""
    if ckpt.kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {ckpt.kind!r}")
    payload = asdict(ckpt)
    payload["model"] = {k: v.detach().cpu() for k, v in ckpt.model.items()}
    payload["format"] = FORMAT
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, kind: str | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the ``last.pt`` file.
        kind: ``refiner`` or ``parser`` to insist on; None accepts either.
    Returns: the :class:`Checkpoint` (tensors on the CPU).
    Raises: CheckpointError naming the file for a missing, empty, truncated or foreign
        file, a checkpoint from a newer partsynth, or one of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file (0 bytes), not a checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - random bytes fail torch.load in many ways (struct.error, KeyError, ...)
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(path, f"not a readable checkpoint (truncated, or not a torch file): {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not a partsynth checkpoint (no 'format': 'partsynth-checkpoint'); "
                                    "a checkpoint from partsynth 0.1 must be retrained")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(path, f"written by a newer partsynth (format {payload['format_version']} > "
                                    f"{FORMAT_VERSION})")
    if kind is not None and payload.get("kind") != kind:
        raise CheckpointError(path, f"this is a {payload.get('kind')} checkpoint; a {kind} checkpoint is needed "
                                    f"here")
    payload.pop("format")
    return Checkpoint(**payload)


#: run-config fields added after checkpoints were first written, with the value every older
#: checkpoint was trained with (an older run resumes when the new config keeps it)
ADDED_FIELDS = {"encoder": "scratch", "encoder_weights": "imagenet", "encoder_lr_scale": 1.0, "amp": "off",
                "accumulate": 1, "prior_source": "morph", "val_fraction": 0.1}


def check_resumable(path: Path, saved: dict, cfg: dict, may_change: frozenset[str]) -> None:
    """Refuse to resume a run whose saved config differs from ``cfg`` in anything but
    ``may_change`` (a longer schedule, threads, device); a field of :data:`ADDED_FIELDS`
    missing from ``saved`` counts as its old value.  Raises ConfigError naming the file and
    the differing fields."""
    saved = {**{k: v for k, v in ADDED_FIELDS.items() if k in cfg}, **saved}
    differ = sorted(k for k in set(saved) | set(cfg) if k not in may_change and saved.get(k) != cfg.get(k))
    if differ:
        raise ConfigError(f"{path} was trained with another config ({', '.join(differ)} differ); "
                          "use a new output folder or --restart")


def resume(path: Path, kind: str, cfg: dict, may_change: frozenset[str], model: torch.nn.Module,
           optimizer: torch.optim.Optimizer, enabled: bool = True) -> tuple[int, list[dict]]:
    """Load the state of the run saved at ``path`` (when it exists and ``enabled``) into
    ``model``, ``optimizer`` and the RNGs, and log it.

    Args:
        path: the run's ``last.pt``.
        kind: ``refiner`` or ``parser``.
        cfg: the JSON-ready config of the run being started.
        may_change: config fields allowed to differ from the saved run (e.g. a larger
            epoch or iteration count, which extends the run).
    Returns: (step, history) saved there, or (0, []) when there is no checkpoint.
    Raises: ConfigError for another run's checkpoint; CheckpointError for a bad file."""
    if not (enabled and path.exists()):
        return 0, []
    ckpt = load_checkpoint(path, kind=kind)
    check_resumable(path, ckpt.config, cfg, may_change)
    model.load_state_dict(ckpt.model)
    optimizer.load_state_dict(ckpt.optimizer)
    set_rng_state(ckpt.rng)
    logging.getLogger("partsynth").info("resuming %s after %d %s", path, ckpt.step,
                                        "epochs" if kind == "refiner" else "steps")
    return ckpt.step, ckpt.history


def set_aside_stale_run(out: Path, data_signature: str) -> Path | None:
    """Keep a run from resuming on data it was not trained on.

    When ``out/last.pt`` exists and ``out/config.json`` records another ``data_signature``
    (or none: a run from before signatures), rename the checkpoint to
    ``last.stale-<old signature>.pt`` (nothing is deleted) so that training starts afresh.
    Returns the renamed file, or None when the run may resume."""
    last = out / "last.pt"
    if not last.exists():
        return None
    try:
        old = json.loads((out / "config.json").read_text(encoding="utf-8")).get("data_signature")
    except (OSError, ValueError, AttributeError):
        old = None
    if old == data_signature:
        return None
    stale = out / f"last.stale-{old or 'unsigned'}.pt"
    os.replace(last, stale)
    logging.getLogger("partsynth").warning("%s was trained on other data (signature %s, now %s): kept as %s, "
                                           "training afresh", last, old, data_signature, stale.name)
    return stale
