"""``partsynth export-model``: a refiner or parser checkpoint as an ONNX model plus its
metadata JSON (:mod:`refine_net.onnx_export`), checked against torch with ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.formats.files import file_sha256
from refine_net.checkpoint import load_checkpoint
from refine_net.onnx_export import OPSET, OnnxModule, export_onnx, max_abs_diff, write_metadata


def export_checkpoint(checkpoint: str | Path, out: str | Path, check: bool = True) -> dict:
    """Export a refiner or a parser / joint checkpoint to ``out`` (``.onnx``) and its
    metadata to ``out`` with ``.json``.

    Parsers take float32 (B, 3, H, W) normalized images of any size (H, W dynamic) and
    return "parsing" logits (B, C, H, W) (joint networks also "heatmaps" (B, 16, H/s, W/s));
    the refiner takes (B, 3 + C, S, S) at its crop size S and returns "parsing" logits.
    ``check`` runs the ONNX file with ONNX Runtime on two inputs (batch 1 and 2, for
    parsers also another aspect ratio) and records ``max_abs_diff`` to torch.
    Returns the metadata.  Raises CheckpointError naming a file that is not a checkpoint;
    ConfigError when ``check`` and ONNX Runtime is not installed."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.kind == "refiner":
        from refine_net.train import load_refiner

        model, ckpt = load_refiner(checkpoint)
        s = ckpt.network["prior"]["size"]
        inputs = [torch.rand(1, model.cfg.in_channels, s, s), torch.rand(2, model.cfg.in_channels, s, s)]
        outputs, dynamic = ["parsing"], False
    else:
        from parser_net.networks import load_parser, network_outputs

        model, ckpt = load_parser(checkpoint, parsing=False)
        h = ckpt.network["size"]
        inputs = [torch.randn(1, 3, h, round(h * 3 / 4)), torch.randn(2, 3, round(h * 3 / 4), h)]
        outputs, dynamic = list(network_outputs(ckpt.network)), True
    out = export_onnx(model, inputs[0], out, outputs, dynamic)
    meta = {"kind": ckpt.kind, "label_set": ckpt.label_set, "network": ckpt.network, "inputs": ["input"],
            "outputs": outputs, "dynamic_size": dynamic, "checkpoint": str(Path(checkpoint).resolve()),
            "checkpoint_sha256": file_sha256(checkpoint), "opset": OPSET,
            "max_abs_diff": max_abs_diff(model, OnnxModule(out), inputs) if check else None,
            "checked_shapes": [list(x.shape) for x in inputs] if check else []}
    write_metadata(out, meta)
    return meta
