"""All disk I/O of :mod:`pipeline`: images, label PNGs, ``.mat``/JSON files, atomic writes.

Every reader raises :class:`~pipeline.errors.DataError` naming the file and the problem;
every writer writes to a temporary file beside the target and renames it, so an
interrupted job never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.errors import DataError
from pipeline.labels import IGNORE, LabelSet, voc_palette


def require_file(path: Path) -> None:
    """DataError naming ``path`` unless it is an existing regular file."""
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a regular file")


#: Temporary files of :func:`atomic_path` start with this; only such files are ever cleaned up.
TEMP_PREFIX = ".partsynth-tmp-"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: the process's umask, read once (``os.umask`` can only be read by setting it)
UMASK = _umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The temporary file is named ``.partsynth-tmp-<stem>.<random>.tmp<suffix>`` (keeping the
    target's suffix, so writers that infer a format from it work), is removed if the block
    raises, and gets the mode a plain ``open`` would give (0666 less the umask), not
    ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


#: the photo file suffixes partsynth reads (folders of photos, OpenPose photos)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: EXIF orientations (TIFF/EXIF tag 0x0112) that turn the stored pixels by 90 or 270 degrees
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def cache_dir() -> Path:
    """The user's cache folder (created): ``$PARTSYNTH_CACHE`` or ``~/.cache/partsynth``.
    Holds what can be made again: prior banks, server logs, ONNX exports of read-only
    checkpoints."""
    path = Path(os.environ.get("PARTSYNTH_CACHE", Path.home() / ".cache" / "partsynth"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_size(path: str | Path) -> tuple[int, int]:
    """(h, w) of an image in pixels as displayed: after its EXIF orientation (phone photos
    store the pixels sideways and a tag that turns them), reading only the header.  The
    frame of :func:`read_image`, of viewers and annotation tools, and of OpenCV's
    ``imread``; keypoint files are taken to be in it.

    Raises: DataError when the file is missing or not a recognisable image.
    """
    path = Path(path)
    require_file(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = _orientation(im) in TRANSPOSING_ORIENTATIONS
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(path, f"unreadable image ({e})") from None
    return (w, h) if turned else (h, w)


def _orientation(im: Image.Image) -> int | None:
    """The EXIF orientation tag, or None; a file truncated before its metadata gives None
    here (its full decode, :func:`read_image`, then reports it as corrupt)."""
    try:
        return im.getexif().get(0x0112)
    except (OSError, SyntaxError, ValueError):
        return None


def _to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB of a decoded image of any Pillow mode: 16-bit greyscale scaled
    to 8 bits (v / 257, rounded), 32-bit integer greyscale likewise when its values fit
    16 bits; floating-point images are refused."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im).astype(np.int64)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise DataError(path, f"{im.mode} greyscale values {grey.min()}..{grey.max()} do not fit 16 bits")
        grey = np.round(grey / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        raise DataError(path, "floating-point image (mode F): convert it to 8 or 16 bits per channel")
    return np.asarray(im.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image fully into uint8 (H, W, 3) RGB as displayed: its EXIF orientation
    applied (the frame of :func:`image_size`), 16-bit images scaled to 8 bits (not
    clipped), palette, greyscale and alpha images converted.

    Raises: DataError when the file is missing, not an image, truncated/corrupt, or of a
        mode that has no faithful 8-bit RGB (floating point, integers beyond 16 bits).
    """
    path = Path(path)
    require_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            shown = ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(path, f"corrupt or unreadable image ({e})") from None
    return _to_rgb(shown, path)


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write uint8 (H, W, 3) RGB atomically; the format follows the suffix (.png, .jpg)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{path}: expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format=_pil_format(path))


def _pil_format(path) -> str:
    ext = Path(path).suffix.lower()
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(ext, "PNG")


def write_label_png(path: str | Path, label_map: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a label map as an 8-bit palette PNG, atomically and losslessly.

    Args:
        label_map: uint8 (H, W) class ids (0 = background, 255 = ignore).
        palette: uint8 (K <= 256, 3) RGB colours; default the PASCAL VOC colour map.
    The pixel values stored are the class ids themselves, so any reader that ignores the
    palette (``PIL`` mode "P", OpenCV ``IMREAD_UNCHANGED`` after palette expansion off)
    still sees the ids.
    """
    lm = np.asarray(label_map)
    if lm.ndim != 2 or lm.dtype != np.uint8:
        raise ValueError(f"{path}: label map must be uint8 (H, W), got {lm.dtype} {lm.shape}")
    pal = voc_palette() if palette is None else np.asarray(palette, dtype=np.uint8)
    full = voc_palette()
    full[: len(pal)] = pal
    full[IGNORE] = (255, 255, 255)
    im = Image.frombytes("P", (lm.shape[1], lm.shape[0]), np.ascontiguousarray(lm).tobytes())
    im.putpalette(full.reshape(-1).tolist())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label PNG (palette "P" or greyscale "L") into uint8 (H, W) class ids.

    Raises: DataError when missing, unreadable, or an RGB image (colour-coded labels need a
        palette lookup, see :func:`rgb_to_label_map`).
    """
    path = Path(path)
    require_file(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DataError(path, f"label PNG must be palette or greyscale, got mode {im.mode}")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(path, f"corrupt or unreadable label image ({e})") from None
    if arr.max(initial=0) > 255:
        raise DataError(path, f"label ids above 255 (max {arr.max()})")
    return arr.astype(np.uint8)


def read_photo_label_png(path: str | Path, size: tuple[int, int], label_set: LabelSet,
                         what: str = "label") -> np.ndarray:
    """:func:`read_label_png` of the label map of a photo of ``size`` (h, w), checked.

    Returns: uint8 (h, w) ids in ``0 .. label_set.num_classes - 1`` or 255 (ignore).
    Raises: DataError naming ``path`` as :func:`read_label_png`, for another size than the
        photo's, or for ids outside ``label_set`` (``what`` names the file's kind)."""
    label_map = read_label_png(path)
    if label_map.shape != tuple(size):
        raise DataError(path, f"{what} is {label_map.shape[1]} x {label_map.shape[0]}, its photo {size[1]} x {size[0]}")
    bad = np.setdiff1d(np.unique(label_map), [*range(label_set.num_classes), IGNORE])
    if bad.size:
        raise DataError(path, f"values {bad[:5].tolist()} are not {label_set.name} classes "
                              f"(0-{label_set.num_classes - 1}, 255 ignore)")
    return label_map


def rgb_to_label_map(rgb: np.ndarray, palette: np.ndarray, *, path=None) -> np.ndarray:
    """Map colour-coded labels uint8 (H, W, 3) to ids with an exact palette uint8 (K, 3).

    Raises: DataError when a colour is not in the palette.
    """
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal = palette.astype(np.int64)
    keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    lut = dict(zip(keys.tolist(), range(len(keys))))
    uniq, inv = np.unique(codes, return_inverse=True)
    unknown = [hex(u) for u in uniq.tolist() if u not in lut]
    if unknown:
        raise DataError(path, f"colours not in the palette: {unknown[:5]}")
    return np.array([lut[u] for u in uniq.tolist()], dtype=np.uint8)[inv].reshape(codes.shape)


def read_mat(path: str | Path, **kwargs) -> dict:
    """``scipy.io.loadmat`` with DataError on a missing or corrupt file."""
    path = Path(path)
    require_file(path)
    try:
        return scipy.io.loadmat(path, **kwargs)
    except (ValueError, OSError, TypeError, NotImplementedError) as e:
        raise DataError(path, f"unreadable .mat file ({e})") from None


def read_json(path: str | Path):
    """Parse a JSON file; DataError on a missing or empty file, text that is not UTF-8, or
    invalid JSON (naming the parser's line and column, 1-based, and its complaint)."""
    path = Path(path)
    require_file(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        if not e.doc.strip():
            raise DataError(path, "empty file, not JSON") from None
        raise DataError(path, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text, so not JSON ({e.reason} at byte {e.start})") from None


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented UTF-8 JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True), encoding="utf-8")


class JsonArraySpool:
    """The elements of a JSON array written one at a time to a temporary file, for
    :func:`write_streamed_json`: an array of 10^5 annotations never sits in memory whole."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.count = 0

    def add(self, obj) -> None:
        """Append one JSON-able element (keys sorted)."""
        self.file.write((b",\n" if self.count else b"") + json.dumps(obj, sort_keys=True).encode("utf-8"))
        self.count += 1

    def copy_to(self, f) -> None:
        self.file.seek(0)
        shutil.copyfileobj(self.file, f)
        self.file.close()


def write_streamed_json(path: str | Path, obj) -> None:
    """Write ``obj``, a :class:`JsonArraySpool` or a dict whose values may be spools, as
    UTF-8 JSON (keys sorted, one array element a line), atomically; each spool is used up."""
    def value(f, v):
        if isinstance(v, JsonArraySpool):
            f.write(b"[\n")
            v.copy_to(f)
            f.write(b"\n]")
        else:
            f.write(json.dumps(v, sort_keys=True).encode("utf-8"))

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if isinstance(obj, dict):
            f.write(b"{")
            for i, key in enumerate(sorted(obj)):
                f.write((b",\n" if i else b"") + json.dumps(str(key)).encode("utf-8") + b": ")
                value(f, obj[key])
            f.write(b"}")
        else:
            value(f, obj)
        f.write(b"\n")


def read_npy(path: str | Path) -> np.ndarray:
    """``numpy.load`` (no pickles) with DataError on a missing or corrupt file."""
    path = Path(path)
    require_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(path, f"unreadable .npy file ({e})") from None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (checkpoint hashes, cache keys); DataError if missing."""
    path = Path(path)
    require_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: bytes of each file of a folder that :func:`tree_signature` hashes (a file this size or
#: smaller is hashed whole)
SIGNATURE_HEAD = 64 * 1024


def tree_signature(path: str | Path) -> str:
    """Hex SHA-256 that changes when what ``path`` holds changes.  A folder: every file's
    relative path, size, modification time, link target (a symbolic link's) and the SHA-256
    of its first :data:`SIGNATURE_HEAD` bytes (a file that small: all of it), so a file
    replaced by another of the same size and time (a restore that keeps an old mtime, a
    copy with ``cp -p``) still changes it, without reading whole photos.  A file (an
    annotation JSON): its whole content, and the name, size, modification time and link
    target of every file beside it (where a COCO or MPII file's photos are), not read.
    Hidden files and folders are left out.  Raises DataError when ``path`` does not exist."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "path not found")
    h = hashlib.sha256()
    if path.is_file():
        h.update(f"{path.name}\0{file_sha256(path)}\n".encode())
        entries, heads = [p for p in path.parent.iterdir() if p != path and p.is_file()], False
        root = path.parent
    else:
        entries, heads, root = [p for p in path.rglob("*") if p.is_file()], True, path
    for p in sorted(entries):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        st = p.stat()
        target = os.path.realpath(p) if p.is_symlink() else ""
        head = ""
        if heads:
            with open(p, "rb") as f:
                head = hashlib.sha256(f.read(SIGNATURE_HEAD)).hexdigest()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{target}\0{head}\n".encode())
    return h.hexdigest()
