"""Label sets: class names, palettes, left/right swaps and groupings between label sets.

A ``label_map`` is uint8 (H, W): 0 = background, 255 = ignore, other values index
``LabelSet.names``.  Palettes use the PASCAL VOC colour map so every label PNG written by
:mod:`pipeline.label_io` looks like the ones researchers already know.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.errors import ConfigError

IGNORE = 255


def resize_label_map(label_map: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """A label map resized to ``size_wh`` = (W, H) by nearest neighbour, aligned with an
    image resized to the same size by ``cv2.INTER_LINEAR`` or ``INTER_AREA``: every output
    pixel takes the class of the source pixel under its centre (``cv2.INTER_NEAREST_EXACT``).
    ``cv2.INTER_NEAREST`` maps corners instead and shifts the labels by up to half a source
    pixel up and left of the image (at a 286/256 zoom the refiner's own prior scored 5.5 mIoU
    lower against labels resized that way).

    Shape: uint8 (H0, W0) or (H0, W0, C) with C <= 4 -> the same dtype at (H, W)."""
    return cv2.resize(label_map, tuple(size_wh), interpolation=cv2.INTER_NEAREST_EXACT)


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: uint8 (n, 3) RGB, class 0 black, 255 (ignore) white-ish.
    A fresh array on every call (callers may change it)."""
    return _voc_palette(n).copy()


@functools.lru_cache(maxsize=4)
def _voc_palette(n: int) -> np.ndarray:
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


@dataclass(frozen=True)
class LabelSet:
    """A named set of classes.

    Attributes:
        name: identifier used in manifests and configs (``ccp8``, ``lip20``, ...).
        names: class names, index = class id, 0 = background.
        flip_pairs: (left id, right id) pairs swapped by a horizontal flip.
    """

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    palette: np.ndarray = field(default_factory=voc_palette, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def flip_lut(self) -> np.ndarray:
        """uint8 (256,) lookup table mapping each id to its mirror id (identity elsewhere)."""
        lut = np.arange(256, dtype=np.uint8)
        for a, b in self.flip_pairs:
            lut[a], lut[b] = b, a
        return lut


#: The 59 Clothing Co-Parsing classes in ``label_list.mat`` order (Yang et al., CVPR 2014).
CCP59_NAMES = (
    "null", "accessories", "bag", "belt", "blazer", "blouse", "bodysuit", "boots", "bra",
    "bracelet", "cape", "cardigan", "clogs", "coat", "dress", "earrings", "flats", "glasses",
    "gloves", "hair", "hat", "heels", "hoodie", "intimate", "jacket", "jeans", "jumper",
    "leggings", "loafers", "necklace", "panties", "pants", "pumps", "purse", "ring", "romper",
    "sandals", "scarf", "shirt", "shoes", "shorts", "skin", "skirt", "sneakers", "socks",
    "stockings", "suit", "sunglasses", "sweater", "sweatshirt", "swimwear", "t-shirt", "tie",
    "tights", "top", "vest", "wallet", "watch", "wedges",
)

#: The ``ccp8`` grouping of ``../shared/README.md``: group name -> CCP class names.
CCP8_GROUPS: dict[str, tuple[str, ...]] = {
    "background": ("null",),
    "hair": ("hair", "hat"),
    "skin": ("skin",),
    "upper-clothes": ("blazer", "blouse", "bodysuit", "bra", "cape", "cardigan", "coat", "hoodie",
                      "jacket", "jumper", "shirt", "suit", "sweater", "sweatshirt", "t-shirt",
                      "top", "vest"),
    "dress": ("dress", "romper", "swimwear"),
    "lower-clothes": ("jeans", "leggings", "pants", "shorts", "skirt", "panties", "intimate",
                      "stockings", "tights", "socks"),
    "shoes": ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes",
              "sneakers", "wedges"),
    "accessories": ("accessories", "bag", "belt", "bracelet", "earrings", "glasses", "gloves",
                    "necklace", "purse", "ring", "scarf", "sunglasses", "tie", "wallet", "watch"),
}

#: LIP and CIHP share these 20 classes (Gong et al., CVPR 2017; Gong et al., ECCV 2018).
LIP_NAMES = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks",
    "pants", "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg",
    "right-leg", "left-shoe", "right-shoe",
)

PASCAL6_NAMES = ("background", "head", "torso", "upper-arms", "lower-arms", "upper-legs",
                 "lower-legs")
PASCAL10_NAMES = ("background", "head", "torso", "left-upper-arm", "right-upper-arm",
                  "left-lower-arm", "right-lower-arm", "left-upper-leg", "right-upper-leg",
                  "left-lower-leg", "right-lower-leg")

LABEL_SETS: dict[str, LabelSet] = {
    "ccp59": LabelSet("ccp59", CCP59_NAMES),
    "ccp8": LabelSet("ccp8", tuple(CCP8_GROUPS)),
    "lip20": LabelSet("lip20", LIP_NAMES, ((14, 15), (16, 17), (18, 19))),
    "cihp20": LabelSet("cihp20", LIP_NAMES, ((14, 15), (16, 17), (18, 19))),
    "pascal6": LabelSet("pascal6", PASCAL6_NAMES),
    "pascal10": LabelSet("pascal10", PASCAL10_NAMES, ((3, 4), (5, 6), (7, 8), (9, 10))),
}


def get_label_set(name: str) -> LabelSet:
    """The :class:`LabelSet` called ``name``; ValueError listing the known names otherwise."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown label set {name!r}; known: {sorted(LABEL_SETS)}") from None


def _lut(pairs: dict[int, int]) -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for src, dst in pairs.items():
        lut[src] = dst
    return lut


def ccp59_to_ccp8_lut() -> np.ndarray:
    """uint8 (256,) lookup table: raw CCP id -> ccp8 id (255 stays 255; unknown ids -> 255)."""
    index = {name: i for i, name in enumerate(CCP59_NAMES)}
    return _lut({index[n]: g for g, members in enumerate(CCP8_GROUPS.values()) for n in members})


def pascal10_to_pascal6_lut() -> np.ndarray:
    """uint8 (256,) lookup: left/right parts merged (3,4 -> 3; 5,6 -> 4; 7,8 -> 5; 9,10 -> 6)."""
    return _lut({0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 4, 7: 5, 8: 5, 9: 6, 10: 6})


def remap(label_map: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Apply a uint8 (256,) lookup table to a uint8 (H, W) label map (255 stays 255)."""
    if label_map.dtype != np.uint8:
        raise TypeError(f"label_map must be uint8, got {label_map.dtype}")
    return lut[label_map]


def flip_label_map(label_map: np.ndarray, label_set: LabelSet) -> np.ndarray:
    """Mirror a uint8 (H, W) label map horizontally and swap its left/right classes."""
    return label_set.flip_lut()[label_map[:, ::-1]]
