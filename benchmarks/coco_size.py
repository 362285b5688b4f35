"""A COCO-size person keypoints file for benchmarks: the COCO fixture's real photos and people
reused under new image ids, with COCO-like keypoint visibility.

    python benchmarks/coco_size.py --people 100000 --out /tmp/coco100k

writes ``OUT/person_keypoints.json`` and beside it one hard link per image to a fixture photo
(COCO's ``file_name``s sit in the annotation file's folder; a copy where OUT is on another
file system), so every image is a file of its own, as synthesis sees it, at no disk cost.
Not symbolic links: synthesis resolves them, and every image would be one of four photos.
Each generated image copies one fixture image (in turn) with its people's polygons, boxes,
crowd regions and keypoints; each keypoint person then loses visible joints as COCO's
train people do: about a third of COCO's keypoint people have fewer than 10 of 17 joints
labelled, so each person keeps all its joints with probability 0.6, else a random 5-16 of
them (the others written as (0, 0, 0), ``num_keypoints`` updated).  Joints are moved by up
to 2 px (seeded), so no two people are the same.  Not a committed file: made where the
benchmark runs.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mmpose" / "coco" / "test_coco.json"


def make_coco_size(out: str | Path, people: int, fixture: str | Path = FIXTURE, seed: int = 0) -> dict:
    """Write ``out/person_keypoints.json`` with at least ``people`` keypoint people (whole
    fixture images are copied, so the count is rounded up to the next image) and the
    images' links beside it.  Returns {"images", "people", "annotations", "path"}.
    Raises FileNotFoundError when the fixture is missing."""
    fixture = Path(fixture)
    src = json.loads(fixture.read_text())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_image = {im["id"]: [a for a in src["annotations"] if a["image_id"] == im["id"]] for im in src["images"]}
    rng = np.random.default_rng(seed)
    images, annotations, keyed = [], [], 0
    while keyed < people:
        template = src["images"][len(images) % len(src["images"])]
        image_id = len(images) + 1
        name = f"{image_id:012d}{Path(template['file_name']).suffix}"
        link = out / name
        if not link.exists():
            place_photo(fixture.parent / template["file_name"], link)
        images.append(dict(template, id=image_id, file_name=name))
        for a in by_image[template["id"]]:
            a = copy.deepcopy(a)
            a.update(id=len(annotations) + 1, image_id=image_id)
            if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd"):
                a["keypoints"], a["num_keypoints"] = _coco_visibility(np.array(a["keypoints"], float).reshape(17, 3), rng)
                keyed += a["num_keypoints"] > 0
            annotations.append(a)
    doc = dict(src, images=images, annotations=annotations)
    path = out / "person_keypoints.json"
    path.write_text(json.dumps(doc))
    return {"images": len(images), "people": keyed, "annotations": len(annotations), "path": str(path)}


def place_photo(photo: Path, at: Path) -> None:
    """A hard link to ``photo`` at ``at``, or a copy across file systems."""
    try:
        os.link(photo.resolve(), at)
    except OSError:
        shutil.copyfile(photo, at)


def _coco_visibility(kp: np.ndarray, rng: np.random.Generator) -> tuple[list[int], int]:
    """Keypoints (17, 3) with joints dropped and jittered as described in the module doc;
    returns the flat int list and the labelled count."""
    present = np.flatnonzero(kp[:, 2] > 0)
    if rng.random() >= 0.6 and len(present) > 5:
        keep = rng.choice(present, size=int(rng.integers(5, min(16, len(present)) + 1)), replace=False)
        kp[np.setdiff1d(present, keep)] = 0
    on = kp[:, 2] > 0
    kp[on, :2] = np.maximum(kp[on, :2] + rng.integers(-2, 3, size=(int(on.sum()), 2)), 0)
    return [int(v) for v in kp.reshape(-1)], int(on.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--people", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fixture", default=str(FIXTURE))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    made = make_coco_size(args.out, args.people, args.fixture, args.seed)
    print(f"{made['path']}: {made['people']:,} keypoint people ({made['annotations']:,} annotations) "
          f"in {made['images']:,} images")


if __name__ == "__main__":
    main()
