"""``partsynth predict`` (a trained parser's label maps for any photos) and ``partsynth export-model``."""
from __future__ import annotations

from pathlib import Path

from flows.options import add_config_options, config_from_args, interrupted, with_item_progress
from parser_net.config import PredictConfig


def cmd_predict(args) -> int:
    cfg = config_from_args(PredictConfig, args)          # a bad option fails before the heavy imports
    from flows.predict import predict_labels, predict_runner
    from flows.server import temporary_server
    from pipeline.formats.predictions import claim_predictions_output
    from pipeline.readers.layouts import list_photos
    from pipeline.formats.item_folder import item_files

    from refine_net.checkpoint import load_checkpoint
    from refine_net.onnx_export import read_metadata

    claim_predictions_output(cfg.out, cfg.data)          # one-line errors before starting a server
    if cfg.engine == "onnx":
        read_metadata(cfg.checkpoint, kind="parser")
    else:
        load_checkpoint(cfg.checkpoint, kind="parser")
    total = len(list_photos(cfg.data))
    out = Path(cfg.out)

    def run():
        with temporary_server():
            return predict_labels.with_options(task_runner=predict_runner(cfg))(cfg, force=args.force)

    try:
        totals = with_item_progress("parsing", total, out, run)
    except KeyboardInterrupt:
        interrupted(f"interrupted; {len(item_files(out))} of {total} photos done in {cfg.out}: rerun to resume")
    print(f"{cfg.out}: {totals['images_parsed']} photos parsed ({totals['images_done']} now, "
          f"{totals['images_reused']} kept), {totals['images_failed']} skipped, {totals['images_removed']} removed")
    for photo, reason in totals["failed"]:
        print(f"  skipped {photo}: {reason}")
    return 0


def cmd_export_model(args) -> int:
    from parser_net.export import export_checkpoint

    out = args.onnx or Path(args.checkpoint).with_suffix(".onnx")
    meta = export_checkpoint(args.checkpoint, out, check=not args.no_check)
    diff = "not checked" if meta["max_abs_diff"] is None else \
        f"max abs diff to torch {meta['max_abs_diff']:.2e} on inputs {meta['checked_shapes']}"
    print(f"wrote {out} and {Path(out).with_suffix('.json').name} ({meta['kind']}, {meta['label_set']}; {diff})")
    return 0


def add_predict_commands(sub) -> None:
    p = sub.add_parser("predict", help="write a trained parser's label maps (and keypoints) for any photos")
    add_config_options(p, PredictConfig)
    p.add_argument("--force", action="store_true", help="parse every photo again")
    p.set_defaults(func=cmd_predict)

    e = sub.add_parser("export-model", help="export a refiner or parser checkpoint to ONNX, checked against torch")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--onnx", type=Path, help="output .onnx file (default: the checkpoint's name with .onnx)")
    e.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime comparison")
    e.set_defaults(func=cmd_export_model)
