"""``partsynth export`` (pre-annotations for Label Studio) and ``partsynth import-labels``
(the corrected label maps back as a labelled folder)."""
from __future__ import annotations

from pathlib import Path


def cmd_export(args) -> int:
    from pipeline.label_studio import CONFIG_FILE, TASKS_FILE, export_label_studio

    done = export_label_studio(args.synth, args.out, order=args.order, max_confidence=args.max_confidence,
                               limit=args.limit, copy_images=args.copy_images, document_root=args.document_root)
    print(f"{args.out}: {done['tasks']} tasks ({done['label_set']}; {done['images_left_out']} labelled images left "
          f"out) in {TASKS_FILE}, labeling config in {CONFIG_FILE}")
    if not args.copy_images:
        print(f"  start Label Studio with LOCAL_FILES_SERVING_ENABLED=true "
              f"LOCAL_FILES_DOCUMENT_ROOT={Path(args.document_root).resolve()}")
    return 0


def cmd_import_labels(args) -> int:
    from pipeline.label_studio import import_label_studio

    done = import_label_studio(args.export, args.out, replace=args.replace)
    print(f"{args.out}: {done['images']} images imported, {done['people']} labelled people in all; "
          f"{done['not_annotated']} tasks without an annotation skipped")
    return 0


def add_annotation_commands(sub) -> None:
    e = sub.add_parser("export", help="synthesized labels as pre-annotations (Label Studio tasks + config)")
    e.add_argument("synth", type=Path, help="synthesized dataset folder")
    e.add_argument("--format", choices=["label-studio"], default="label-studio")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--order", choices=["confidence", "name"], default="confidence",
                   help="confidence: lowest-confidence images first (default)")
    e.add_argument("--max-confidence", type=float, help="only images with a person below this confidence")
    e.add_argument("--limit", type=int, help="at most this many tasks")
    e.add_argument("--copy-images", action="store_true", help="copy the photos beside the tasks")
    e.add_argument("--document-root", type=Path, default=Path("/"),
                   help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT (the photos must lie under it)")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import-labels", help="corrected annotations back into a labelled partsynth folder")
    i.add_argument("export", type=Path, help="Label Studio JSON export of the tasks")
    i.add_argument("--format", choices=["label-studio"], default="label-studio")
    i.add_argument("--out", type=Path, required=True, help="labelled folder (created or extended)")
    i.add_argument("--replace", action="store_true", help="overwrite people already labelled in --out")
    i.set_defaults(func=cmd_import_labels)
