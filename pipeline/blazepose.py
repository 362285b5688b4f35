"""BlazePose keypoints and person masks for photos that come without keypoints.

BlazePose (Bazarevsky et al., "BlazePose: On-device Real-time Body Pose tracking", 2020)
as shipped in ``mediapipe==0.10.14``'s legacy ``mediapipe.solutions.pose``: a person
detector, the "full" landmark model (33 landmarks with visibility) and a person
segmentation mask, all inside the wheel, so it runs offline on the CPU.  Only
``model_complexity=1`` ("full") is bundled; 0 ("lite") and 2 ("heavy") download their
model at run time and are refused here before mediapipe is touched.

mediapipe is imported lazily: the rest of partsynth installs and runs without it
(``pip install -e '.[pose]' && pip install --no-deps mediapipe==0.10.14``).
"""
from __future__ import annotations

import contextlib
import queue
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError, DataError
from pipeline.skeleton import from_blazepose33

MEDIAPIPE_VERSION = "0.10.14"
BUNDLED_COMPLEXITY = 1
INSTALL_HINT = ("pip install -e '.[pose]' && pip install --no-deps mediapipe==0.10.14 "
                "(partsynth[pose]; later mediapipe releases dropped mediapipe.solutions)")
NUM_LANDMARKS = 33
#: protobuf < 5 (which mediapipe 0.10.14 needs) warns each time mediapipe's graph calls its
#: deprecated ``SymbolDatabase.GetPrototype``: nothing a user can act on, and a keypoints run
#: over 8,000 photos printed it 664 times
PROTOBUF_DEPRECATION = r"SymbolDatabase\.GetPrototype\(\) is deprecated"


@dataclass
class EstimatedPerson:
    """One person found by BlazePose, in the photo's pixels.

    Attributes:
        landmarks: float32 (33, 3): x, y in pixels of the whole photo (may lie outside
            it) and mediapipe's visibility in [0, 1], BlazePose order.
        keypoints: float32 (16, 3) canonical keypoints (:func:`pipeline.skeleton.from_blazepose33`).
        derived: bool (16,) joints derived rather than estimated (pelvis, thorax, neck, head top).
        mask: float32 (H, W) person-mask probability in [0, 1] over the whole photo
            (0 outside the box crop the person was found in).
        box: (x0, y0, x1, y1) pixels of the crop the estimator ran on (the whole photo
            without person boxes).
        box_score: the detector score of the person box given, or None without boxes.
    """

    landmarks: np.ndarray
    keypoints: np.ndarray
    derived: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]
    box_score: float | None = None


def mediapipe_pose(why: str = ""):
    """The ``mediapipe.solutions.pose`` module.  Raises ConfigError in one line when
    mediapipe is missing or not release 0.10.14, starting with ``why`` (the reason the
    caller needs it, e.g. "PHOTOS is a folder of photos without keypoints") when given.
    Silences protobuf's deprecation warning that mediapipe's graphs raise on every photo
    (:data:`PROTOBUF_DEPRECATION`), for the whole process."""
    lead = f"{why}; " if why else ""
    warnings.filterwarnings("ignore", message=PROTOBUF_DEPRECATION, category=UserWarning)
    try:
        import mediapipe as mp
    except ImportError:
        raise ConfigError(f"{lead}keypoint estimation needs mediapipe {MEDIAPIPE_VERSION}: {INSTALL_HINT}") from None
    version = getattr(mp, "__version__", "?")
    if version != MEDIAPIPE_VERSION or not hasattr(mp, "solutions"):
        raise ConfigError(f"{lead}keypoint estimation needs mediapipe {MEDIAPIPE_VERSION}, found {version}: "
                          f"{INSTALL_HINT}")
    return mp.solutions.pose


def crop_box(box, image_size: tuple[int, int], padding: float) -> tuple[int, int, int, int] | None:
    """A person box widened by ``padding`` x its longer side on every side and clipped to
    the image.

    Args:
        box: COCO ``[x, y, w, h]`` in pixels (float).
        image_size: (h, w) of the photo.
        padding: fraction of the box's longer side added on each side (0.25: a 300 px
            tall box gains 75 px above, below, left and right).
    Returns: integer (x0, y0, x1, y1) with x1 > x0 + 1 and y1 > y0 + 1, or None when the
        box does not overlap the image by at least 2 x 2 pixels or is not finite.
    """
    x, y, w, h = (float(v) for v in box)
    if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
        return None
    pad = padding * max(w, h)
    x0, y0 = max(0, int(np.floor(x - pad))), max(0, int(np.floor(y - pad)))
    x1, y1 = min(image_size[1], int(np.ceil(x + w + pad))), min(image_size[0], int(np.ceil(y + h + pad)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


class BlazePose:
    """BlazePose on whole photos or on padded person-box crops.

    Args:
        model_complexity: must be 1 (the only model inside the mediapipe wheel).
        min_detection_confidence: mediapipe's person-detector threshold in [0, 1].
        box_padding: see :func:`crop_box`.
        max_graphs: at most this many mediapipe graphs (about 130 MB each) run at a time;
            further threads wait for a free one.
    Raises: ConfigError for another ``model_complexity`` (0 and 2 would download a model),
        a threshold outside [0, 1], or a missing / wrong mediapipe.

    A mediapipe graph is not thread-safe: each call borrows one from a pool, made on first
    need, so memory stays bounded however many threads call (a thread pool that gave every
    task a new thread and graph held 9 GiB for 1,094 photos).
    """

    def __init__(self, model_complexity: int = BUNDLED_COMPLEXITY, min_detection_confidence: float = 0.5,
                 box_padding: float = 0.25, max_graphs: int = 2):
        if model_complexity != BUNDLED_COMPLEXITY:
            raise ConfigError(f"model_complexity {model_complexity} is not inside the mediapipe wheel and would be "
                              f"downloaded at run time; only {BUNDLED_COMPLEXITY} (BlazePose full) runs offline")
        if not 0.0 <= min_detection_confidence <= 1.0:
            raise ConfigError(f"min_detection_confidence must lie in [0, 1], got {min_detection_confidence}")
        self.min_detection_confidence = float(min_detection_confidence)
        self.box_padding = float(box_padding)
        if max_graphs < 1:
            raise ConfigError(f"max_graphs must be >= 1, got {max_graphs}")
        self._pose_module = mediapipe_pose()
        self._free: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._made, self.max_graphs = 0, max_graphs

    @contextlib.contextmanager
    def _graph(self):
        """Borrow a graph: a free one, a new one while fewer than ``max_graphs`` exist, else
        wait for one."""
        with self._lock:
            make = self._free.empty() and self._made < self.max_graphs
            self._made += make
        graph = self._pose_module.Pose(
            static_image_mode=True, model_complexity=BUNDLED_COMPLEXITY, smooth_landmarks=False,
            enable_segmentation=True, smooth_segmentation=False,
            min_detection_confidence=self.min_detection_confidence) if make else self._free.get()
        try:
            yield graph
        finally:
            self._free.put(graph)

    def _one(self, rgb: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int],
             path, score: float | None) -> EstimatedPerson | str:
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        with self._graph() as graph:
            result = graph.process(crop)
        if result.pose_landmarks is None:
            return "no person found" + ("" if score is None else f" in box {list(box)}")
        lm = np.array([[p.x, p.y, p.visibility] for p in result.pose_landmarks.landmark], dtype=np.float32)
        lm[:, 0] = lm[:, 0] * (x1 - x0) + x0
        lm[:, 1] = lm[:, 1] * (y1 - y0) + y0
        pose = from_blazepose33(lm, path=path)
        mask = np.zeros(size, dtype=np.float32)
        if result.segmentation_mask is not None:
            mask[y0:y1, x0:x1] = np.clip(result.segmentation_mask, 0.0, 1.0)
        return EstimatedPerson(lm, pose.keypoints, pose.derived, mask, box, score)

    def estimate(self, rgb: np.ndarray, boxes=None, scores=None, *, path=None) -> list[EstimatedPerson | str]:
        """Landmarks, canonical keypoints and a person mask per person.

        Args:
            rgb: uint8 (H, W, 3) RGB photo.
            boxes: None (one person: the whole photo) or COCO ``[x, y, w, h]`` person boxes
                in pixels; each is padded (``box_padding``) and clipped to the photo.
            scores: the boxes' detector scores (kept with each person), or None.
            path: the photo's file, named in errors.
        Returns: one entry per box (one without boxes): the person, or why there is none
            (no person found in the crop, a box that does not overlap the photo).
        Raises: DataError naming ``path`` for an image that is not (H, W, 3) uint8.
        """
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DataError(path, f"expected a uint8 (H, W, 3) RGB photo, got {rgb.dtype} {rgb.shape}")
        size = rgb.shape[:2]
        if boxes is None:
            return [self._one(rgb, (0, 0, size[1], size[0]), size, path, None)]
        scores = [None] * len(boxes) if scores is None else scores
        people = []
        for box, score in zip(boxes, scores):
            crop = crop_box(box, size, self.box_padding)
            people.append(self._one(rgb, crop, size, path, score) if crop is not None else
                          f"person box {[round(float(v), 1) for v in box]} lies outside the {size[1]}x{size[0]} photo")
        return people

    def close(self) -> None:
        """Release the idle mediapipe graphs (call when no thread is estimating)."""
        while not self._free.empty():
            self._free.get_nowait().close()
            with self._lock:
                self._made -= 1
