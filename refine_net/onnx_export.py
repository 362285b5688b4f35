"""ONNX export of the refiner and the parsers, and running an exported model with ONNX
Runtime behind the same call as the torch network (``model(x)`` -> dict of tensors).

Export uses torch's TorchScript-based exporter (``dynamo=False``: the torch.export-based
one needs onnxscript, which this project does not install), opset 17, with the batch and,
for parsers, the height and width as dynamic axes.  Beside ``model.onnx`` a
``model.json`` records what a user of the file needs: the kind, label set, network record
(input size, output stride), the input and output names, the source checkpoint's SHA-256
and the largest difference to torch measured at export.  ONNX Runtime is the optional
extra ``partsynth[onnx]`` (with the onnx package the exporter needs); both are imported
only here and only when needed.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import CheckpointError
from pipeline.formats.files import read_json
from refine_net.config import require_onnx

OPSET = 17


class _Outputs(torch.nn.Module):
    """The named outputs of a network that returns a dict, as a tuple (ONNX outputs)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[n] for n in self.names)


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: str | Path, outputs: list[str],
                dynamic_size: bool) -> Path:
    """Write ``model`` (eval mode, returns a dict) as ONNX to ``path`` (atomically).

    Args:
        example: float32 (1, C, H, W) input used for tracing.
        outputs: the dict keys exported, in order (e.g. ["parsing", "heatmaps"]).
        dynamic_size: H and W dynamic (parsers) besides the batch (always dynamic).
    Returns: ``path``.  Raises ConfigError when the onnx package is not installed."""
    from pipeline.formats.files import atomic_path

    require_onnx("ONNX export", ("onnx",))
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # the TorchScript exporter, on purpose
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: fine
        warnings.filterwarnings("ignore", message=".*instance_norm.*")   # instance statistics: as in eval
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")   # a strided slice: kept as is
        torch.onnx.export(_Outputs(model.eval(), outputs), (example,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=outputs,
                          dynamic_axes={"input": axes, **{n: axes for n in outputs}})
    return path


def _ort():
    require_onnx("running an ONNX model", ("onnxruntime",))
    import onnxruntime

    return onnxruntime


class OnnxModule(torch.nn.Module):
    """An exported model run by ONNX Runtime on the CPU, called like the torch network:
    float32 (B, C, H, W) tensor in, {output name: float32 tensor} out.  It has no
    parameters (callers that look for a device get the CPU)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        ort = _ort()
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # no busy-waiting between runs: the torch post-processing needs the same cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        values = self.session.run(None, {"input": np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)})
        return {n: torch.from_numpy(v) for n, v in zip(self.outputs, values)}


def max_abs_diff(model: torch.nn.Module, onnx_model: OnnxModule, inputs: list[torch.Tensor]) -> float:
    """Largest absolute difference between the torch and the ONNX Runtime outputs (all
    outputs, all ``inputs``)."""
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref, got = model.eval()(x), onnx_model(x)
            for name, value in got.items():
                worst = max(worst, float((ref[name] - value).abs().max()))
    return worst


def metadata_path(onnx_path: str | Path) -> Path:
    """``model.json`` beside ``model.onnx``."""
    return Path(onnx_path).with_suffix(".json")


def write_metadata(onnx_path: str | Path, meta: dict) -> Path:
    """Write the export's metadata JSON beside the ONNX file; returns its path."""
    from pipeline.formats.files import write_json

    path = metadata_path(onnx_path)
    write_json(path, meta)
    return path


def read_metadata(onnx_path: str | Path, kind: str | None = None) -> dict:
    """The metadata written at export.  Raises CheckpointError naming the file when the
    ONNX file or its JSON is missing, or the model is not of ``kind``."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise CheckpointError(onnx_path, "ONNX model not found")
    path = metadata_path(onnx_path)
    if not path.is_file():
        raise CheckpointError(onnx_path, f"no {path.name} beside it: export models with 'partsynth export-model'")
    meta = read_json(path)
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(onnx_path, f"this is an exported {meta.get('kind')}; a {kind} is needed here")
    return meta


def export_refiner(checkpoint: str | Path, out: str | Path, check: bool = True) -> dict:
    """Export a refiner checkpoint to ``out`` (``.onnx``) and its metadata to ``out`` with
    ``.json``: float32 (B, 3 + C, S, S) refiner inputs at the crop size S (C prior
    channels when it reads a prior) -> "parsing" logits (B, C, S, S); the batch is dynamic.
    ``check`` runs the file with ONNX Runtime on batches of 1 and 2 and records
    ``max_abs_diff`` to torch.  Returns the metadata.  Raises CheckpointError naming a file
    that is not a refiner checkpoint; ConfigError when onnx (or, with ``check``, ONNX
    Runtime) is not installed."""
    from refine_net.train import load_refiner

    model, ckpt = load_refiner(checkpoint)
    s = ckpt.network["prior"]["size"]
    inputs = [torch.rand(1, model.cfg.in_channels, s, s), torch.rand(2, model.cfg.in_channels, s, s)]
    return write_export(model, ckpt, checkpoint, inputs, out, ["parsing"], False, check)


def write_export(model: torch.nn.Module, ckpt, checkpoint: str | Path, inputs: list[torch.Tensor], out: str | Path,
                  outputs: list[str], dynamic_size: bool, check: bool) -> dict:
    """Export ``model`` (eval mode) of :class:`refine_net.checkpoint.Checkpoint` ``ckpt``,
    read from ``checkpoint``, to ``out`` with its metadata; ``inputs[0]`` traces it, and
    with ``check`` all of them are compared with ONNX Runtime.  Returns the metadata."""
    from pipeline.formats.files import file_sha256

    out = export_onnx(model, inputs[0], out, outputs, dynamic_size)
    meta = {"kind": ckpt.kind, "label_set": ckpt.label_set, "network": ckpt.network, "inputs": ["input"],
            "outputs": outputs, "dynamic_size": dynamic_size, "checkpoint": str(Path(checkpoint).resolve()),
            "checkpoint_sha256": file_sha256(checkpoint), "opset": OPSET,
            "max_abs_diff": max_abs_diff(model, OnnxModule(out), inputs) if check else None,
            "checked_shapes": [list(x.shape) for x in inputs] if check else []}
    write_metadata(out, meta)
    return meta


def refiner_onnx(checkpoint: str | Path, checkpoint_sha256: str | None = None) -> Path:
    """The refiner checkpoint as ONNX, exported once: ``<checkpoint>.onnx`` (and its
    ``.json``) beside it, as ``partsynth export-model`` writes them by default, or, when the
    checkpoint's folder is not writable, ``onnx/refiner-<SHA-256 prefix>.onnx`` in
    :func:`pipeline.formats.files.cache_dir`.  Reused while its metadata's SHA-256 is the
    checkpoint's (``checkpoint_sha256`` when the caller has it) and exported again
    otherwise.  Raises as :func:`export_refiner`."""
    from pipeline.formats.files import cache_dir, file_sha256

    sha = checkpoint_sha256 or file_sha256(checkpoint)
    path = Path(checkpoint).with_suffix(".onnx")
    if not os.access(path.parent, os.W_OK):                       # a shared, read-only model folder
        path = cache_dir() / "onnx" / f"refiner-{sha[:20]}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and metadata_path(path).is_file():
        try:
            known = read_metadata(path, kind="refiner").get("checkpoint_sha256")
        except (CheckpointError, ValueError):
            known = None
        if known == sha:
            return path
    export_refiner(checkpoint, path)
    return path
