"""Leeds Sports Pose (Johnson & Everingham, BMVC 2010): 2,000 images, 14 joints each."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


from pipeline.formats import files
from pipeline.errors import DataError
from pipeline.formats.records import PersonRecord, ReadReport, guard
from pipeline.skeleton import from_lsp14

#: ``train_fit_residual_px`` above this marks a training image's joints as suspect.
SUSPECT_RESIDUAL_PX = 8.0


def read_lsp(root: str | Path, *, skip_bad: bool = False,
             report: ReadReport | None = None) -> Iterator[PersonRecord]:
    """Yield one keypoint-only record per LSP image.

    Layout: ``images/im0001.jpg ... im2000.jpg``; ``joints.npy`` float (N, 14, 3) = x, y in
    pixels of these images and visible (1) / occluded (0), LSP order; optional
    ``joints_meta.json`` with per-image provenance (``source_per_image``,
    ``train_fit_residual_px`` for im0001-im1000).  Row i of ``joints.npy`` belongs to
    ``im{i+1:04d}.jpg``.  Split: im0001-im1000 ``train``, im1001-im2000 ``test`` (the
    standard LSP halves).  ``meta`` carries the provenance and ``suspect`` (fit residual
    above :data:`SUSPECT_RESIDUAL_PX`).

    Raises: DataError for a missing ``images/`` or ``joints.npy``, joints not shaped
        (N, 14, 3); per image (unless ``skip_bad``) for a missing or unreadable image.
    """
    root = Path(root)
    joints_path = root / "joints.npy"
    joints = files.read_npy(joints_path)
    if joints.ndim != 3 or joints.shape[1:] != (14, 3):
        raise DataError(joints_path, f"expected joints of shape (N, 14, 3), got {joints.shape}")
    meta_path = root / "joints_meta.json"
    meta_all = files.read_json(meta_path) if meta_path.exists() else {}
    sources = meta_all.get("source_per_image", [None] * len(joints))
    residuals = meta_all.get("train_fit_residual_px", [])
    if not (root / "images").is_dir():
        raise DataError(root / "images", "LSP images folder not found")
    for i in range(len(joints)):
        def one(i=i):
            path = root / "images" / f"im{i + 1:04d}.jpg"
            size = files.image_size(path)
            kp, derived = from_lsp14(joints[i], path=joints_path)
            residual = float(residuals[i]) if i < len(residuals) else None
            meta = {"joints_source": sources[i] if i < len(sources) else None,
                    "fit_residual_px": residual,
                    "suspect": bool(residual is not None and residual > SUSPECT_RESIDUAL_PX)}
            return PersonRecord(path, size, path.stem, "lsp", None, kp, derived, None,
                                "train" if i < 1000 else "test", meta)

        rec = guard(one, skip_bad=skip_bad, report=report)
        if rec is not None:
            yield rec

