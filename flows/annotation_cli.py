"""``partsynth export`` (pre-annotations for Label Studio, CVAT, COCO or VOC) and
``partsynth import-labels`` (the corrected label maps back as a labelled folder)."""
from __future__ import annotations

from pathlib import Path

#: what import-labels reads back; export also writes the training layouts of mmsegmentation and LIP
FORMATS = ["label-studio", "cvat", "coco", "voc"]
EXPORT_FORMATS = [*FORMATS, "mmseg", "lip"]


def cmd_export(args) -> int:
    from pipeline.annotation.common import Selection

    select = Selection(args.order, args.max_confidence, args.limit, args.copy_images)
    if args.format == "label-studio":
        from pipeline.annotation.label_studio import CONFIG_FILE, TASKS_FILE, export_label_studio

        done = export_label_studio(args.synth, args.out, select, document_root=args.document_root)
        print(f"{args.out}: {done['tasks']} tasks ({done['label_set']}; {done['images_left_out']} labelled images "
              f"left out) in {TASKS_FILE}, labeling config in {CONFIG_FILE}")
        print(f"  start Label Studio with LOCAL_FILES_SERVING_ENABLED=true "
              f"LOCAL_FILES_DOCUMENT_ROOT={done['document_root']}")
        return 0
    from pipeline.annotation import coco, cvat, training_layouts, voc

    if args.format in ("mmseg", "lip"):
        export = {"mmseg": training_layouts.export_mmseg, "lip": training_layouts.export_lip}[args.format]
        done = export(args.synth, args.out, select)
        print(f"{args.out}: {done['images']} images ({done['label_set']}, {args.format} layout: {done['train']} train, "
              f"{done['val']} val; {done['images_left_out']} labelled images left out)")
        return 0
    export = {"cvat": cvat.export_cvat, "coco": coco.export_coco, "voc": voc.export_voc}[args.format]
    done = export(args.synth, args.out, select)
    print(f"{args.out}: {done['images']} images ({done['label_set']}, {args.format}; {done['images_left_out']} "
          f"labelled images left out); partsynth.json beside them is needed to import the corrections")
    return 0


def cmd_import_labels(args) -> int:
    if args.format == "label-studio":
        from pipeline.annotation.label_studio import import_label_studio

        done = import_label_studio(args.export, args.out, replace=args.replace)
    else:
        from pipeline.annotation import coco, cvat, voc

        read = {"cvat": cvat.import_cvat, "coco": coco.import_coco, "voc": voc.import_voc}[args.format]
        done = read(args.export, args.out, meta=args.meta, replace=args.replace)
    print(f"{args.out}: {done['images']} images imported, {done['people']} labelled people in all; "
          f"{done['not_annotated']} images without an annotation skipped")
    return 0


def add_annotation_commands(sub) -> None:
    e = sub.add_parser("export", help="synthesized labels as pre-annotations (Label Studio, CVAT, COCO, VOC)")
    e.add_argument("synth", type=Path, help="synthesized dataset folder")
    e.add_argument("--format", choices=EXPORT_FORMATS, default="label-studio",
                   help="label-studio: tasks + labeling config; cvat: CVAT for images 1.1 XML with masks and the "
                        "project's labels.json; coco: COCO instances with RLE masks; voc: VOC segmentation PNGs; "
                        "mmseg / lip: the training layouts of mmsegmentation and LIP (SCHP), photos copied")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--order", choices=["confidence", "name"], default="confidence",
                   help="confidence: lowest-confidence images first (default)")
    e.add_argument("--max-confidence", type=float, help="only images with a person below this confidence")
    e.add_argument("--limit", type=int, help="at most this many images")
    e.add_argument("--copy-images", action="store_true", help="copy the photos beside the annotations")
    e.add_argument("--document-root", type=Path,
                   help="label-studio: LOCAL_FILES_DOCUMENT_ROOT, which the photos (or, with --copy-images, "
                        "their copies) must lie under (default: --out with --copy-images, else /)")
    e.set_defaults(func=cmd_export)

    i = sub.add_parser("import-labels", help="corrected annotations back into a labelled partsynth folder")
    i.add_argument("export", type=Path, help="the tool's export: Label Studio JSON, CVAT annotations.xml, COCO "
                                             "annotations.json, or the VOC folder")
    i.add_argument("--format", choices=FORMATS, default="label-studio")
    i.add_argument("--out", type=Path, required=True, help="labelled folder (created or extended)")
    i.add_argument("--meta", type=Path, help="cvat/coco/voc: the partsynth.json of the export (default: beside it)")
    i.add_argument("--replace", action="store_true", help="overwrite people already labelled in --out")
    i.set_defaults(func=cmd_import_labels)
