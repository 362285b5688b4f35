"""``partsynth keypoints``: BlazePose keypoints and person masks for photos without keypoints."""
from __future__ import annotations

from pathlib import Path

from flows.options import add_config_options, config_from_args, interrupted, with_item_progress
from pipeline.keypoints_config import KeypointsConfig


def run_keypoints(cfg: KeypointsConfig, force: bool = False) -> dict:
    """The ``estimate-keypoints`` flow under a temporary Prefect server and a progress bar;
    one-line errors (mediapipe missing, output folder not ours) before the server starts."""
    from flows.keypoints import estimate_keypoints, estimator_of, keypoints_runner
    from flows.server import temporary_server
    from pipeline.formats.estimated_poses import claim_keypoints_output
    from pipeline.person_boxes import read_person_boxes
    from pipeline.readers.layouts import list_photos
    from pipeline.formats.item_folder import item_files

    claim_keypoints_output(cfg.out, cfg.data)
    estimator_of(cfg)
    photos = list_photos(cfg.data)
    total = len(photos)
    if cfg.boxes:
        read_person_boxes(cfg.boxes, photos, cfg.min_box_score)      # a bad boxes file: one line, before the server

    def run():
        with temporary_server():
            return estimate_keypoints.with_options(task_runner=keypoints_runner(cfg))(cfg, force=force)

    try:
        return with_item_progress("estimating keypoints", total, Path(cfg.out), run)
    except KeyboardInterrupt:
        interrupted(f"interrupted; {len(item_files(cfg.out))} of {total} photos done in {cfg.out}: rerun to resume")


def cmd_keypoints(args) -> int:
    if args.photos is not None:
        args.data = str(args.photos)
    cfg = config_from_args(KeypointsConfig, args)
    totals = run_keypoints(cfg, force=args.force)
    print(f"{cfg.out}: {totals['people']} people in {totals['images']} photos ({totals['images_done']} photos now, "
          f"{totals['images_reused']} kept), {totals['images_failed']} photos skipped, {totals['misses']} boxes "
          f"without a person, {totals['images_removed']} removed")
    for photo, reason in totals["failed"]:
        print(f"  skipped {photo}: {reason}")
    return 0


def add_keypoints_commands(sub) -> None:
    k = sub.add_parser("keypoints", help="BlazePose keypoints and person masks for photos without keypoints "
                                         "(partsynth[pose])")
    k.add_argument("photos", nargs="?", type=Path, help="a photo or a folder of photos (same as --data)")
    add_config_options(k, KeypointsConfig)
    k.add_argument("--force", action="store_true", help="estimate every photo again")
    k.set_defaults(func=cmd_keypoints)
