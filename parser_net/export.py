"""``partsynth export-model``: a refiner or parser checkpoint as an ONNX model plus its
metadata JSON (:mod:`refine_net.onnx_export`), checked against torch with ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

import torch

from refine_net.checkpoint import load_checkpoint
from refine_net.onnx_export import export_refiner, write_export


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
        return export_refiner(checkpoint, out, check)
    from parser_net.networks import load_parser, network_outputs

    model, ckpt = load_parser(checkpoint, parsing=False)
    h = ckpt.network["size"]
    inputs = [torch.randn(1, 3, h, round(h * 3 / 4)), torch.randn(2, 3, round(h * 3 / 4), h)]
    return write_export(model, ckpt, checkpoint, inputs, out, list(network_outputs(ckpt.network)), True, check)
