"""The annotation loop: synthesized labels out as pre-annotations for an annotation tool,
the corrected label maps back in as a labelled partsynth folder.

Formats (``partsynth export --format`` / ``partsynth import-labels --format``):
:mod:`pipeline.annotation.label_studio` (tasks with brush predictions, label-studio-converter),
:mod:`pipeline.annotation.coco` (COCO instances with RLE masks, pycocotools),
:mod:`pipeline.annotation.cvat` ("CVAT for images 1.1" XML with ``<mask>`` elements),
:mod:`pipeline.annotation.voc` (Pascal VOC segmentation); the shared parts are in
:mod:`pipeline.annotation.common`.
"""
