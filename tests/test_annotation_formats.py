"""export -> CVAT / COCO / VOC -> import-labels: identical label maps, corrections kept,
errors that name the image."""
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.cli import main as cli
from pipeline.formats import files
from pipeline.annotation import coco, cvat, voc
from pipeline.annotation.common import ExportFacts, Selection, export_names
from pipeline.formats.item_folder import item_name
from pipeline.errors import DataError
from pipeline.labels import IGNORE, LABEL_SETS
from pipeline.readers.layouts import iter_records
from checks import assert_import_round_trip

EXPORT = {"cvat": cvat.export_cvat, "coco": coco.export_coco, "voc": voc.export_voc}
IMPORT = {"cvat": cvat.import_cvat, "coco": coco.import_coco, "voc": voc.import_voc}


def source(fmt, out):
    """What import-labels reads back from an export folder."""
    return {"cvat": out / "annotations.xml", "coco": out / "annotations.json", "voc": out}[fmt]


def exported_names(fmt, out):
    """Image file names in the order the export lists them."""
    if fmt == "cvat":
        return [im.get("name") for im in ET.parse(out / "annotations.xml").getroot().iter("image")]
    if fmt == "coco":
        return [im["file_name"] for im in json.loads((out / "annotations.json").read_text())["images"]]
    stems = (out / "ImageSets/Segmentation/default.txt").read_text().split()
    names = {n.rsplit(".", 1)[0]: n for n in json.loads((out / "partsynth.json").read_text())}
    return [names[s] for s in stems]


def test_cvat_rle_round_trip_and_checks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((23, 31)) < 0.3
        mask[rng.integers(0, 23), rng.integers(0, 31)] = True
        runs, box = cvat.mask_to_rle(mask)
        assert sum(runs) == box[2] * box[3]
        assert np.array_equal(cvat.rle_to_mask(runs, box, mask.shape, "t"), mask)
    one = np.zeros((4, 5), bool)
    one[1, 2] = True                                   # the box starts with a 1: a leading 0-run
    assert cvat.mask_to_rle(one) == ([0, 1], (2, 1, 1, 1))
    with pytest.raises(DataError, match="cover 3 pixels"):
        cvat.rle_to_mask([1, 2], (0, 0, 2, 2), (4, 5), "t")
    with pytest.raises(DataError, match="leaves the image"):
        cvat.rle_to_mask([4], (4, 0, 2, 2), (4, 5), "t")


def test_coco_annotations_round_trip_every_class_and_ignore():
    rng = np.random.default_rng(1)
    lm = rng.integers(0, 7, (37, 53)).astype(np.uint8)
    lm[:5, :5] = IGNORE
    anns = coco.label_map_annotations(lm, image_id=1, first_id=1, score=0.5)
    assert {a["category_id"] for a in anns} == {1, 2, 3, 4, 5, 6, 255}
    back = np.zeros_like(lm)
    for a in anns:
        back[coco._mask(a["segmentation"], 37, 53, "t")] = a["category_id"]
    assert np.array_equal(back, lm)
    a = anns[0]
    assert a["area"] == int((lm == a["category_id"]).sum()) and len(a["bbox"]) == 4
    names = [c["name"] for c in coco.categories("pascal10")]
    assert names == [*LABEL_SETS["pascal10"].names[1:], "ignore"]


@pytest.mark.parametrize("fmt", ["cvat", "coco", "voc"])
def test_export_then_import_gives_identical_label_maps(fmt, synth, tmp_path):
    out = tmp_path / fmt
    done = EXPORT[fmt](synth, out, Selection(copy_images=True))
    assert done["images"] == 8 and done["images_left_out"] == 0
    meta = json.loads((out / "partsynth.json").read_text())
    scores = [min(p["confidence"] for p in meta[name]["people"]) for name in exported_names(fmt, out)]
    assert len(scores) == 8 and scores == sorted(scores)          # lowest confidence first
    assert len(list((out / ("JPEGImages" if fmt == "voc" else "images")).iterdir())) == 8
    assert EXPORT[fmt](synth, tmp_path / "few", Selection(limit=3))["images"] == 3
    assert_import_round_trip(lambda lab, replace=False: IMPORT[fmt](source(fmt, out), lab, replace=replace),
                             synth, tmp_path / "labelled")


def test_a_correction_in_each_format_comes_back(synth, tmp_path):
    """Relabel one image's top-left 10 x 10 pixels as class 1 in each tool's own encoding."""
    truth = {}
    for fmt in ("cvat", "coco", "voc"):
        out = tmp_path / fmt
        EXPORT[fmt](synth, out)
        name = exported_names(fmt, out)[0]
        fact = json.loads((out / "partsynth.json").read_text())[name]
        with Image.open(fact["image"]) as im:
            w, h = im.size
        fixed = np.zeros((h, w), np.uint8)
        fixed[:10, :10] = 1
        if fmt == "voc":
            files.write_label_png(out / "SegmentationClass" / f"{name.rsplit('.', 1)[0]}.png", fixed)
        elif fmt == "coco":
            doc = json.loads((out / "annotations.json").read_text())
            first = doc["images"][0]["id"]
            doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != first]
            doc["annotations"] += coco.label_map_annotations(fixed, first, 10_000, 1.0)
            (out / "annotations.json").write_text(json.dumps(doc))
        else:
            tree = ET.parse(out / "annotations.xml")
            image = next(tree.getroot().iter("image"))
            for m in list(image):
                image.remove(m)
            runs, (left, top, bw, bh) = cvat.mask_to_rle(fixed == 1)
            ET.SubElement(image, "mask", label=LABEL_SETS[fact["label_set"]].names[1], rle=", ".join(map(str, runs)),
                          left=str(left), top=str(top), width=str(bw), height=str(bh), z_order="0")
            tree.write(out / "annotations.xml")
        IMPORT[fmt](source(fmt, out), tmp_path / f"lab_{fmt}")
        got = {str(r.image_path): r.label_map for r in iter_records(tmp_path / f"lab_{fmt}")}
        assert np.array_equal(got[fact["image"]], fixed)
        truth[fmt] = fact["image"]
    assert len(set(truth.values())) == 1               # the same image first in every format


def test_import_errors_name_the_image(synth, tmp_path):
    for fmt in ("cvat", "coco", "voc"):
        EXPORT[fmt](synth, tmp_path / fmt)
    # an unknown class name
    xml = (tmp_path / "cvat" / "annotations.xml").read_text()
    first_label = LABEL_SETS["pascal10"].names[1:]
    bad = xml.replace('label="', 'label="hat-', 1)
    (tmp_path / "cvat" / "bad.xml").write_text(bad)
    with pytest.raises(DataError, match=r"image 0 .*unknown label 'hat-"):
        cvat.import_cvat(tmp_path / "cvat" / "bad.xml", tmp_path / "o1")
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    used = doc["annotations"][0]["category_id"]
    for c in doc["categories"]:
        if c["id"] == used:
            c["name"] = "hat"
    (tmp_path / "coco" / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"image 1 .*unknown label 'hat'"):
        coco.import_coco(tmp_path / "coco" / "bad.json", tmp_path / "o2")
    labelmap = (tmp_path / "voc" / "labelmap.txt").read_text()
    (tmp_path / "voc" / "labelmap.txt").write_text(labelmap.replace(f"{first_label[0]}:", "hat:"))
    with pytest.raises(DataError, match="unknown label 'hat'"):
        voc.import_voc(tmp_path / "voc", tmp_path / "o3")
    (tmp_path / "voc" / "labelmap.txt").write_text(labelmap)
    # a size that is not the photo's
    stem = (tmp_path / "voc" / "ImageSets/Segmentation/default.txt").read_text().split()[0]
    png = tmp_path / "voc" / "SegmentationClass" / f"{stem}.png"
    files.write_label_png(png, np.zeros((7, 9), np.uint8))
    with pytest.raises(DataError, match=rf"image {stem}: label map \(7, 9\) differs from the photo"):
        voc.import_voc(tmp_path / "voc", tmp_path / "o4")
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    doc["images"][0]["height"] += 1
    (tmp_path / "coco" / "size.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="image 1 .*mask size"):
        coco.import_coco(tmp_path / "coco" / "size.json", tmp_path / "o5")
    # an image partsynth did not export, and a missing partsynth.json
    (tmp_path / "cvat" / "foreign.xml").write_text(xml.replace('name="', 'name="x', 1))
    with pytest.raises(DataError, match="not in partsynth.json"):
        cvat.import_cvat(tmp_path / "cvat" / "foreign.xml", tmp_path / "o6")
    (tmp_path / "lone").mkdir()
    (tmp_path / "lone" / "annotations.xml").write_text(xml)
    with pytest.raises(DataError, match="no partsynth.json"):
        cvat.import_cvat(tmp_path / "lone" / "annotations.xml", tmp_path / "o7")
    assert cvat.import_cvat(tmp_path / "lone" / "annotations.xml", tmp_path / "o7",
                            meta=tmp_path / "cvat" / "partsynth.json")["images"] == 8
    # a VOC image without its mask PNG: not annotated
    png.unlink()
    assert voc.import_voc(tmp_path / "voc", tmp_path / "o8")["not_annotated"] == 1


def test_export_and_import_commands_for_every_format(synth, tmp_path, capsys):
    for fmt in ("cvat", "coco", "voc"):
        assert cli(["export", str(synth), "--format", fmt, "--out", str(tmp_path / fmt), "--limit", "2"]) == 0
        assert "2 images" in capsys.readouterr().out
        assert cli(["import-labels", str(source(fmt, tmp_path / fmt)), "--format", fmt,
                    "--out", str(tmp_path / f"lab_{fmt}")]) == 0
        assert "2 images imported" in capsys.readouterr().out
    assert cli(["import-labels", str(tmp_path / "coco" / "annotations.json"), "--format", "cvat",
                "--out", str(tmp_path / "x")]) == 1
    assert "not XML" in capsys.readouterr().err


@pytest.fixture(scope="module")
def synth_with_val(synth, tmp_path_factory):
    """The session's synthesized set with its first two images' people marked val (as
    ``synthesize --relabel --split val`` marks them)."""
    import shutil

    out = tmp_path_factory.mktemp("val") / "synth"
    shutil.copytree(synth, out)
    for record in sorted((out / "items").glob("*.json"))[:2]:
        doc = json.loads(record.read_text())
        for p in doc["persons"]:
            p["split"] = "val"
        record.write_text(json.dumps(doc))
    return out


def test_voc_lists_train_and_val_and_cvat_writes_its_project_labels(synth_with_val, tmp_path):
    voc.export_voc(synth_with_val, tmp_path / "voc")
    lists = {n: (tmp_path / "voc/ImageSets/Segmentation" / f"{n}.txt").read_text().split()
             for n in ("default", "train", "val")}
    assert len(lists["val"]) == 2 and len(lists["train"]) == 6 and sorted(lists["train"] + lists["val"]) == \
        sorted(lists["default"])
    cvat.export_cvat(synth_with_val, tmp_path / "cvat")
    labels = json.loads((tmp_path / "cvat" / "labels.json").read_text())
    xml = ET.parse(tmp_path / "cvat" / "annotations.xml").getroot()
    assert [(lab["name"], lab["color"], lab["type"]) for lab in labels] == \
        [(lab.findtext("name"), lab.findtext("color"), lab.findtext("type")) for lab in xml.iter("label")]
    assert labels[0]["name"] == LABEL_SETS["pascal10"].names[1] and labels[-1]["name"] == "ignore"


@pytest.mark.parametrize("fmt", ["mmseg", "lip"])
def test_training_layouts_hold_every_label_map_in_its_split(fmt, synth_with_val, tmp_path, capsys):
    out = tmp_path / fmt
    assert cli(["export", str(synth_with_val), "--format", fmt, "--out", str(out)]) == 0
    assert "6 train, 2 val" in capsys.readouterr().out
    meta = json.loads((out / "partsynth.json").read_text())
    synthesized = {json.loads(p.read_text())["label"]: json.loads(p.read_text())
                   for p in (synth_with_val / "items").glob("*.json")}
    for name, fact in meta.items():
        split = "val" if fact["people"][0]["split"] == "val" else "train"
        stem = name.rsplit(".", 1)[0]
        if fmt == "mmseg":
            photo, label = out / "img_dir" / split / name, out / "ann_dir" / split / f"{stem}.png"
        else:
            photo, label = out / f"{split}_images" / name, out / f"{split}_segmentations" / f"{stem}.png"
            assert stem in (out / f"{split}_id.txt").read_text().split()
        assert photo.read_bytes() == open(fact["image"], "rb").read()
        item = next(i for i in synthesized.values() if i["image"] == fact["image"])
        with Image.open(label) as im:                       # the ids as the other tools read them
            assert np.array_equal(np.array(im), files.read_label_png(synth_with_val / item["label"]))
    if fmt == "mmseg":
        assert (out / "classes.txt").read_text().split("\n")[:2] == ["background", LABEL_SETS["pascal10"].names[1]]


def test_pycocotools_reads_our_coco_export_mask_for_mask(synth, tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO

    coco.export_coco(synth, tmp_path / "coco")
    with contextlib.redirect_stdout(io.StringIO()):
        api = COCO(str(tmp_path / "coco" / "annotations.json"))
    meta = json.loads((tmp_path / "coco" / "partsynth.json").read_text())
    names = {c["id"]: c["name"] for c in api.loadCats(api.getCatIds())}
    assert len(api.getImgIds()) == 8
    for image in api.loadImgs(api.getImgIds()):
        item = next(json.loads(p.read_text()) for p in (synth / "items").glob("*.json")
                    if json.loads(p.read_text())["image"] == meta[image["file_name"]]["image"])
        truth = files.read_label_png(synth / item["label"])
        painted = np.zeros_like(truth)
        for ann in api.loadAnns(api.getAnnIds(imgIds=image["id"])):
            mask = api.annToMask(ann).astype(bool)
            assert not painted[mask].any()                               # one class per pixel
            painted[mask] = IGNORE if names[ann["category_id"]] == "ignore" else ann["category_id"]
        assert np.array_equal(painted, truth)


def test_export_names_are_the_photos_relative_paths_and_come_back_from_tools():
    names = export_names(["/d/a/x.jpg", "/d/b/x.jpg", "/d/b/y.png"])
    assert names == {"/d/a/x.jpg": "a/x.jpg", "/d/b/x.jpg": "b/x.jpg", "/d/b/y.png": "b/y.png"}
    assert export_names(["/d/a/x.jpg"]) == {"/d/a/x.jpg": "x.jpg"}
    facts = ExportFacts({n: {"image": p} for p, n in names.items()})
    assert facts.find("a/x.jpg")["image"] == "/d/a/x.jpg"
    assert facts.find("b\\x.jpg")["image"] == "/d/b/x.jpg"              # a Windows path from a tool
    assert facts.find("y.png")["image"] == "/d/b/y.png"                 # a tool that keeps base names
    assert facts.find("b/x", suffix_free=True)["image"] == "/d/b/x.jpg"  # a VOC image id
    assert facts.find("x.jpg") is None
    with pytest.raises(DataError, match="'x.jpg' matches 2 exported images"):
        facts.lookup("x.jpg", "annotations.xml image 3")
    with pytest.raises(DataError, match="not in partsynth.json"):
        facts.lookup("z.jpg", "annotations.xml image 4")


def test_cvat_names_line_up_with_a_task_made_from_the_photos_and_old_exports_still_import(synth, demo_dir,
                                                                                         tmp_path):
    out = tmp_path / "cvat"
    cvat.export_cvat(synth, out)
    photos = {p.name for p in (demo_dir / "images").iterdir()}
    names = exported_names("cvat", out)
    assert len(names) == 8 and set(names) <= photos       # a task made from demo/images names its frames so
    assert_import_round_trip(lambda lab, replace=False: cvat.import_cvat(out / "annotations.xml", lab,
                                                                         replace=replace), synth, tmp_path / "new")
    # an export written before photos kept their names: images named <stem>-<8 hex digits><suffix>
    facts = json.loads((out / "partsynth.json").read_text())
    old_name = {n: f"{item_name(f['image'])}{Path(f['image']).suffix}" for n, f in facts.items()}
    files.write_json(out / "partsynth.json", {old_name[n]: f for n, f in facts.items()})
    tree = ET.parse(out / "annotations.xml")
    for image in tree.getroot().iter("image"):
        image.set("name", old_name[image.get("name")])
    tree.write(out / "annotations.xml")
    assert_import_round_trip(lambda lab, replace=False: cvat.import_cvat(out / "annotations.xml", lab,
                                                                         replace=replace), synth, tmp_path / "old")
