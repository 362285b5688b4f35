"""Dataset readers: each yields :class:`pipeline.formats.records.PersonRecord` items.

Every reader takes ``skip_bad`` (skip bad items instead of raising
:class:`pipeline.errors.DataError`) and an optional ``report``
(:class:`pipeline.formats.records.ReadReport`) that collects what was skipped and why.
``docs/data.md`` documents each format.
"""
from pipeline.readers.ccp import read_ccp
from pipeline.readers.coco import read_coco
from pipeline.readers.lip_cihp import read_cihp, read_lip
from pipeline.readers.lsp import read_lsp
from pipeline.readers.mpii import read_mpii_json, read_mpii_mat
from pipeline.readers.openpose import read_openpose
from pipeline.readers.pascal_part import read_pascal_part
from pipeline.formats.folder import read_partsynth_folder

__all__ = ["read_ccp", "read_coco", "read_cihp", "read_lip", "read_lsp", "read_mpii_json",
           "read_mpii_mat", "read_openpose", "read_pascal_part", "read_partsynth_folder"]
