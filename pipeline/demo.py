"""The embedded demo set: deterministic, clearly *synthetic* articulated figures.

Each image holds one stick-and-capsule figure with a textured background, a
``pascal10`` body-part label map (head, torso, left/right upper/lower arms and legs) and
its 16 canonical keypoints.  Nothing is downloaded; the same seed gives the same files.
It exists so that a fresh machine can run the whole pipeline; it says nothing about
accuracy on real photographs.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.formats import files
from pipeline.labels import LABEL_SETS
from pipeline.formats.folder import DATASET_FILE, FORMAT, PEOPLE_FILE, keypoints_to_json
from pipeline.skeleton import J, NUM_JOINTS, VISIBLE

#: (joint a, joint b, pascal10 class, width as a fraction of the torso length)
LIMBS = (
    ("right_shoulder", "right_elbow", 4, 0.17), ("right_elbow", "right_wrist", 6, 0.13),
    ("left_shoulder", "left_elbow", 3, 0.17), ("left_elbow", "left_wrist", 5, 0.13),
    ("right_hip", "right_knee", 8, 0.24), ("right_knee", "right_ankle", 10, 0.18),
    ("left_hip", "left_knee", 7, 0.24), ("left_knee", "left_ankle", 9, 0.18),
)


@dataclass(frozen=True)
class DemoFigure:
    """One generated person: image uint8 (S, S, 3) RGB, label_map uint8 (S, S) pascal10 ids,
    keypoints float32 (16, 3) canonical (all present, v = 2)."""

    image: np.ndarray
    label_map: np.ndarray
    keypoints: np.ndarray


def _rotate(v: np.ndarray, deg: float) -> np.ndarray:
    r = np.deg2rad(deg)
    return np.array([np.cos(r) * v[0] - np.sin(r) * v[1], np.sin(r) * v[0] + np.cos(r) * v[1]])


def _limb(down: np.ndarray, outward: np.ndarray, deg: float) -> np.ndarray:
    """Unit vector ``deg`` degrees from ``down`` towards ``outward`` (both unit vectors)."""
    r = np.deg2rad(deg)
    return np.cos(r) * down + np.sin(r) * outward


def random_pose(rng: np.random.Generator, size: int) -> np.ndarray:
    """Canonical keypoints float32 (16, 3) of a random upright-ish figure in a size x size image.

    Seen from the front with probability 0.75 (the person's right on the image left),
    from the back otherwise.  Arms swing -25..120 degrees outward, elbows bend 0..100,
    legs -12..35 outward, knees 0..45.
    """
    torso = size * rng.uniform(0.2, 0.26)
    up = _rotate(np.array([0.0, -1.0]), rng.normal(0, 8))
    right = np.array([up[1], -up[0]])  # the person's right = image-left when seen from the front
    if rng.random() < 0.25:
        right = -right
    pelvis = np.array([size / 2 + rng.uniform(-0.08, 0.08) * size, size * rng.uniform(0.5, 0.56)])
    p = {"pelvis": pelvis, "thorax": pelvis + torso * up}
    p["upper_neck"] = p["thorax"] + 0.18 * torso * up
    p["head_top"] = p["upper_neck"] + 0.5 * torso * _rotate(up, rng.normal(0, 10))
    for name, out in (("right", right), ("left", -right)):
        p[f"{name}_shoulder"] = p["thorax"] + 0.38 * torso * out
        p[f"{name}_hip"] = pelvis + 0.22 * torso * out
        arm = rng.uniform(-25, 120)
        p[f"{name}_elbow"] = p[f"{name}_shoulder"] + 0.6 * torso * _limb(-up, out, arm)
        p[f"{name}_wrist"] = p[f"{name}_elbow"] + 0.52 * torso * _limb(-up, out, arm + rng.uniform(0, 100))
        leg = rng.uniform(-12, 35)
        p[f"{name}_knee"] = p[f"{name}_hip"] + 0.8 * torso * _limb(-up, out, leg)
        p[f"{name}_ankle"] = p[f"{name}_knee"] + 0.75 * torso * _limb(-up, out, leg - rng.uniform(0, 45))
    kp = np.zeros((NUM_JOINTS, 3), dtype=np.float32)
    for name, xy in p.items():
        kp[J[name]] = (*xy, VISIBLE)
    return kp


def _texture(rng: np.random.Generator, size: int, base: np.ndarray, amount: float) -> np.ndarray:
    noise = rng.normal(0, 1, (size // 8 + 1, size // 8 + 1, 3)).astype(np.float32)
    noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    stripes = np.sin(np.arange(size) * rng.uniform(0.2, 0.9) + rng.uniform(0, 6))[None, :, None]
    if rng.random() < 0.5:
        stripes = stripes.transpose(1, 0, 2)
    return base + amount * (noise * 0.6 + stripes * 0.4 * rng.random())


def render_figure(kp: np.ndarray, rng: np.random.Generator, size: int) -> DemoFigure:
    """Rasterise a figure for canonical keypoints ``kp`` (16, 3): image, label map, keypoints."""
    torso = float(np.linalg.norm(kp[J["thorax"], :2] - kp[J["pelvis"], :2]))
    label = np.zeros((size, size), dtype=np.uint8)
    pt = lambda name: tuple(int(round(c)) for c in kp[J[name], :2] * 16)  # 4 fractional bits
    draw = dict(shift=4, lineType=cv2.LINE_8)
    torso_poly = np.array([pt("right_shoulder"), pt("left_shoulder"), pt("left_hip"), pt("right_hip")])
    cv2.fillConvexPoly(label, torso_poly, 2, **draw)
    cv2.line(label, pt("thorax"), pt("upper_neck"), 1, max(2, int(0.2 * torso)), **draw)
    centre = (kp[J["upper_neck"], :2] + kp[J["head_top"], :2]) / 2
    axis = kp[J["head_top"], :2] - kp[J["upper_neck"], :2]
    angle = float(np.degrees(np.arctan2(axis[1], axis[0])))
    cv2.ellipse(label, tuple(int(round(c)) for c in centre * 16),
                (int(np.linalg.norm(axis) * 8), int(0.19 * torso * 16)), angle, 0, 360, 1, -1, **draw)
    for k in rng.permutation(len(LIMBS)):
        a, b, cls, width = LIMBS[k]
        cv2.line(label, pt(a), pt(b), int(cls), max(2, int(round(width * torso))), **draw)
    palette = {c: rng.uniform(30, 225, 3) for c in ("skin", "top", "bottom")}
    part_colour = {1: "skin", 2: "top", 3: "top", 4: "top", 5: "skin", 6: "skin",
                   7: "bottom", 8: "bottom", 9: "bottom", 10: "bottom"}
    image = _texture(rng, size, rng.uniform(40, 215, 3), 40.0)
    for c in range(1, 11):
        mask = label == c
        if mask.any():
            tex = _texture(rng, size, palette[part_colour[c]] + rng.normal(0, 8, 3), 18.0)
            image[mask] = tex[mask]
    image = cv2.GaussianBlur(image, (3, 3), 0) + rng.normal(0, 4, image.shape)
    return DemoFigure(np.clip(image, 0, 255).astype(np.uint8), label, kp)


def make_figure(seed: int, index: int, size: int = 160) -> DemoFigure:
    """The ``index``-th figure of the demo set with ``seed`` (independent of the set's size)."""
    rng = np.random.default_rng([seed, index])
    return render_figure(random_pose(rng, size), rng, size)


def write_demo_set(out_dir: str | Path, *, num_labelled: int = 120, num_keypoint_only: int = 120,
                   size: int = 160, seed: int = 0, overwrite: bool = False) -> Path:
    """Generate the demo set into ``out_dir`` (partsynth folder layout) and return it.

    Labelled people get ``split`` ``train``, or ``val`` for every 4th (index % 4 == 0);
    keypoint-only people get ``unlabelled`` and their hidden ground truth goes to
    ``heldout_labels/`` (not referenced by ``people.json``) so synthesized labels can be
    scored.  Files are written atomically; ``people.json`` last.

    Raises: FileExistsError when ``out_dir`` holds a different dataset and not ``overwrite``.
    """
    out = Path(out_dir)
    if (out / DATASET_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a dataset; pass overwrite=True to replace it")
    if overwrite and out.exists():
        shutil.rmtree(out)
    label_set = LABEL_SETS["pascal10"]
    people = []
    for i in range(num_labelled + num_keypoint_only):
        fig = make_figure(seed, i, size)
        pid = f"demo{i:05d}"
        labelled = i < num_labelled
        files.write_image(out / "images" / f"{pid}.png", fig.image)
        label_rel = f"labels/{pid}.png" if labelled else f"heldout_labels/{pid}.png"
        files.write_label_png(out / label_rel, fig.label_map)
        people.append({"person_id": pid, "image": f"images/{pid}.png",
                       "label": label_rel if labelled else None,
                       "keypoints": keypoints_to_json(fig.keypoints),
                       "split": ("val" if i % 4 == 0 else "train") if labelled else "unlabelled"})
    files.write_json(out / DATASET_FILE, {
        "format": FORMAT, "label_set": label_set.name, "synthetic": True,
        "description": "partsynth demo set: SYNTHETIC articulated figures, not photographs",
        "generator": "pipeline.demo.write_demo_set", "seed": seed, "size": size,
        "num_labelled": num_labelled, "num_keypoint_only": num_keypoint_only})
    files.write_json(out / PEOPLE_FILE, people)
    return out


#: where ``partsynth run`` and ``partsynth data summary --demo`` keep the demo set
DEFAULT_DEMO_DIR = Path("data") / "demo"


def ensure_demo(path: str | Path = DEFAULT_DEMO_DIR, seed: int = 0) -> Path:
    """The demo set at ``path``, generated there (with ``seed``) unless a dataset is
    already there.  Returns the folder."""
    import sys

    path = Path(path)
    if not (path / DATASET_FILE).exists():
        print(f"generating the synthetic demo set in {path} (seed {seed}) ...", file=sys.stderr)
        write_demo_set(path, seed=seed)
    return path
