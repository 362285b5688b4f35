"""The streamed COCO reader gives the records that pycocotools' in-memory index gives: same
people in the same order, keypoints, instance masks, ignore regions; and it names bad files."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pipeline.errors import DataError
from pipeline.formats import files
from pipeline.formats.records import ReadReport
from pipeline.readers import read_coco
from pipeline.readers.coco_stream import streamed_coco
from pipeline.skeleton import from_coco17

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mmpose" / "coco" / "test_coco.json"


def reference_people(path: Path) -> list[dict]:
    """What pycocotools' COCO index says each keypoint person of ``path`` is."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    cats = coco.getCatIds(catNms=["person"])
    out = []
    for img_id in sorted(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, catIds=cats, iscrowd=None))
        unused = [a for a in anns if a.get("iscrowd", 0) or a.get("num_keypoints", 0) < 1]
        others = (mask_utils.merge([coco.annToRLE(a) for a in unused], intersect=False) if unused else None)
        for a in anns:
            if a in unused:
                continue
            out.append({"id": f"{img_id}/{a['id']}", "keypoints": from_coco17(a["keypoints"])[0],
                        "mask": mask_utils.decode(coco.annToRLE(a)) if a.get("segmentation") else None,
                        "others": None if others is None else mask_utils.decode(others)})
    return out


def decoded(rle: dict | None):
    return None if rle is None else mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})


def assert_same(records, reference):
    assert [r.person_id for r in records] == [p["id"] for p in reference]
    for r, p in zip(records, reference):
        np.testing.assert_array_equal(r.keypoints, p["keypoints"])
        for got, want in ((decoded(r.meta.get("rle")), p["mask"]), (decoded(r.meta.get("other_people_rle")), p["others"])):
            assert (got is None) == (want is None), r.person_id
            if want is not None:
                np.testing.assert_array_equal(got, want)


def test_the_fixture_reads_as_pycocotools_reads_it():
    records = list(read_coco(FIXTURE))
    assert len(records) == 12
    assert any(r.meta.get("other_people_rle") for r in records)            # its crowd / unkeyed people
    assert_same(records, reference_people(FIXTURE))


def test_annotations_out_of_image_order_every_segmentation_kind(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        files.write_image(tmp_path / name, np.zeros((30, 40, 3), np.uint8))
    square = np.zeros((30, 40), np.uint8, order="F")
    square[5:15, 5:15] = 1
    compressed = mask_utils.encode(square)
    kp = [12, 8, 2] * 17

    def ann(i, image_id, segmentation, **extra):
        return dict({"id": i, "image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                     "keypoints": kp, "bbox": [5, 5, 10, 10], "segmentation": segmentation}, **extra)
    doc = {"annotations": [ann(10, 2, [[1, 1, 20, 1, 20, 20, 1, 20]]),                          # polygon
                           ann(11, 1, {"size": [30, 40], "counts": compressed["counts"].decode()}),
                           ann(12, 2, {"size": [30, 40], "counts": [45, 10, 20, 10, 1115]}, iscrowd=1),
                           ann(13, 1, [[30, 2, 38, 2, 38, 28, 30, 28]]),
                           ann(14, 2, [[25, 1, 35, 1, 35, 10]], num_keypoints=0, keypoints=[0] * 51),
                           ann(15, 1, [[1, 1, 5, 1, 5, 5]], category_id=2)],                  # not a person
           "images": [{"id": 2, "file_name": "b.jpg", "height": 30, "width": 40},
                      {"id": 1, "file_name": "a.jpg", "height": 30, "width": 40}],
           "categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "person"}]}   # after the annotations
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    report = ReadReport()
    records = list(read_coco(path, report=report))
    assert [r.person_id for r in records] == ["1/11", "1/13", "2/10"]     # image ids ascending, file order
    assert report.counts["crowd"] == 1 and report.counts["few_keypoints"] == 1
    assert_same(records, reference_people(path))
    assert records[2].meta["other_people_rle"] is not None                # image 2: the crowd and the unkeyed


def test_the_annotations_wait_on_disk_grouped_by_image(tmp_path):
    doc = {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in (3, 1, 2)],
           "annotations": [{"id": a, "image_id": i, "category_id": 1} for a, i in ((1, 2), (2, 3), (3, 2), (4, 1), (5, 9))],
           "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with streamed_coco(tmp_path / "a.json") as coco:
        groups = [(i, [a["id"] for a in anns]) for i, anns in coco.by_image()]
        assert coco.orphans == [(5, 9)]
    assert groups == [(1, [4]), (2, [1, 3]), (3, [2])]


@pytest.mark.parametrize("text, problem", [
    ("", "empty file, not JSON"),
    ("[1, 2]", "not a COCO annotation file (a JSON list, not an object)"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 1, "image_', "invalid JSON at line 1, column"),
    ('{"images": [{"file_name": "a.jpg"}]}', "an image entry without an id"),
    ('{"images": [], "annotations": [7]}', "an annotation without an id"),
])
def test_bad_files_are_named_with_their_problem(tmp_path, text, problem):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DataError, match="bad.json") as e:
        list(read_coco(path))
    assert problem in str(e.value)
