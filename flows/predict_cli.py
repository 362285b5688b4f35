"""``partsynth predict``: a trained parser's label maps for any photos."""
from __future__ import annotations

import threading
from pathlib import Path

from flows.options import add_config_options, config_from_args, interrupted, progress_bar
from parser_net.config import PredictConfig


def cmd_predict(args) -> int:
    cfg = config_from_args(PredictConfig, args)          # a bad option fails before the heavy imports
    from flows.predict import predict_labels, predict_runner
    from flows.server import temporary_server
    from pipeline.predictions import claim_predictions_output, list_photos
    from pipeline.synth_dataset import item_files

    from refine_net.checkpoint import load_checkpoint

    claim_predictions_output(cfg.out, cfg.data)          # one-line errors before starting a server
    load_checkpoint(cfg.checkpoint, kind="parser")
    total = len(list_photos(cfg.data))
    out, done = Path(cfg.out), threading.Event()
    try:
        with progress_bar() as bar:
            task = bar.add_task("parsing", total=total)

            def watch():
                while not done.wait(0.5):
                    bar.update(task, completed=len(item_files(out)))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                with temporary_server():
                    totals = predict_labels.with_options(task_runner=predict_runner(cfg))(cfg, force=args.force)
            finally:
                done.set()
                watcher.join()
    except KeyboardInterrupt:
        interrupted(f"interrupted; {len(item_files(out))} of {total} photos done in {cfg.out}: rerun to resume")
    print(f"{cfg.out}: {totals['images_parsed']} photos parsed ({totals['images_done']} now, "
          f"{totals['images_reused']} kept), {totals['images_failed']} skipped, {totals['images_removed']} removed")
    for photo, reason in totals["failed"]:
        print(f"  skipped {photo}: {reason}")
    return 0


def add_predict_commands(sub) -> None:
    p = sub.add_parser("predict", help="write a trained parser's label maps (and keypoints) for any photos")
    add_config_options(p, PredictConfig)
    p.add_argument("--force", action="store_true", help="parse every photo again")
    p.set_defaults(func=cmd_predict)
