"""The main job's bodyparts preset: VITON's parses as body parts train the parsers, in-the-wild
keypoint people are labelled by the partition labeller, PASCAL-Part's persons score them."""
import json

import pytest

from flows.experiment_config import ExperimentConfig, preset_values
from flows.options import validate_config
from pipeline.errors import ConfigError
from pipeline.readers.layouts import list_photos
from pipeline.readers.pascal_part import read_pascal_part
from conftest import viton_subset


def test_the_bodyparts_preset_labels_in_the_wild_people_without_a_refiner(shared_data):
    cfg = validate_config(ExperimentConfig, preset_values("bodyparts", str(shared_data)))
    assert cfg.labeller == "partition" and cfg.label_set == "pascal6" and not cfg.score_synthesis
    assert cfg.eval_set() == (str(shared_data / "pascal_part"), None)
    assert cfg.labelled == str(shared_data / "viton") and cfg.parser("p").label_set == "pascal6"
    mmpose = shared_data / "mmpose"
    assert cfg.keypoint_only == (str(shared_data / "lsp"), str(mmpose / "coco" / "test_coco.json"),
                                 str(mmpose / "ochuman" / "test_ochuman.json"), str(mmpose / "mpii" / "test_mpii.json"))
    # BlazePose masks only where people have none of their own: COCO's files carry segmentations
    assert [k.data for k in cfg.keypoint_runs()] == [str(shared_data / "lsp"), str(mmpose / "mpii" / "test_mpii.json")]
    for data in cfg.keypoint_only:
        synth = cfg.synthesis(None, data)
        assert synth.checkpoint is None and synth.labels == "pascal6"
        assert (synth.person_masks is None) == data.endswith(("test_coco.json", "test_ochuman.json"))
    assert all(cfg.trains_parser(d) for d in cfg.keypoint_only)


def test_the_partition_labeller_needs_body_parts_and_no_refiner_score(shared_data, tmp_path):
    values = preset_values("bodyparts", str(shared_data))
    with pytest.raises(ValueError, match="set label_set to pascal6"):
        ExperimentConfig(**dict(values, label_set="ccp8"))
    with pytest.raises(ValueError, match="turn score_synthesis off"):
        ExperimentConfig(**dict(values, score_synthesis=True))
    with pytest.raises(ConfigError, match="needs --data-root"):
        preset_values("bodyparts")
    (tmp_path / "viton").mkdir()
    with pytest.raises(ConfigError, match="pascal_part: not found"):
        preset_values("bodyparts", str(tmp_path))


def test_keypoints_of_an_annotation_file_are_its_peoples_photos(shared_data):
    mpii = shared_data / "mmpose" / "mpii"
    photos = list_photos(mpii / "test_mpii.json")
    assert len(photos) == 5 and set(photos) == {p.resolve() for p in mpii.glob("*.jpg")}   # its people's photos
    assert list_photos(mpii / "004645041.jpg") == [(mpii / "004645041.jpg").resolve()]


@pytest.mark.slow
def test_the_bodyparts_main_job(prefect_harness, shared_data, tmp_path):
    from flows.experiment import run_experiment

    values = dict(preset_values("bodyparts", str(shared_data)),
                  labelled=str(viton_subset(shared_data, tmp_path / "viton", n=24)),
                  keypoint_only=(str(shared_data / "mmpose" / "coco" / "test_coco.json"),),
                  person_masks=False, parser_encoder="scratch", refiner_encoder="scratch", parser_iterations=3,
                  finetune_iterations=2, threads=2, work=str(tmp_path / "work"), reports=str(tmp_path / "reports"))
    result = run_experiment(validate_config(ExperimentConfig, values))
    assert result["refiner"] is None and not (tmp_path / "work" / "refiner").exists()
    assert result["synthetic_people"] == {"test_coco.json": {"people_labelled": 12, "people_skipped": 0}}
    images = {r.image_path for r in read_pascal_part(shared_data / "pascal_part")}
    assert len(images) == 8
    for scores in result["parsers"].values():      # PASCAL-Part's images, each scored once, in body parts
        assert scores["label_set"] == "pascal6" and scores["images"] == 8 and 0 < scores["mean_iou"] < 1
    semi = json.loads((tmp_path / "work" / "parser_semi" / "config.json").read_text())["train"]
    assert semi["label_set"] == "pascal6" and semi["synthetic"] == [str(tmp_path / "work" / "synth" / "test_coco.json")]
    (report,) = (tmp_path / "reports").iterdir()
    assert {"predictions_eval.png", "synthetic_test_coco.png"} <= {p.name for p in report.iterdir()}
    table = (report / "table.md").read_text()
    assert "test_coco.json 12 labelled, 0 skipped" in table and "Refiner after" not in table


def test_the_people_of_one_image_are_scored_together(shared_data):
    import numpy as np

    from parser_net.evaluate import image_label_maps
    from pipeline.labels import IGNORE

    recs = list(read_pascal_part(shared_data / "pascal_part"))
    merged = dict(image_label_maps(recs))
    assert list(merged) == list(dict.fromkeys(r.image_path for r in recs))
    crowded = [p for p in merged if sum(r.image_path == p for r in recs) > 1]
    assert crowded                                   # PASCAL-Part has images of several persons
    for path in crowded:
        mine = [r.label_map for r in recs if r.image_path == path]
        assert (merged[path][mine[0] != IGNORE] == mine[0][mine[0] != IGNORE]).all()   # the first person's map kept
        for lm in mine:                              # every person's parts are labelled in the image's map
            assert (merged[path][(lm != IGNORE) & (lm > 0)] != IGNORE).all()
        assert (merged[path] == IGNORE).sum() < min((lm == IGNORE).sum() for lm in mine)
