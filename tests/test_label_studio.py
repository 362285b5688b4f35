"""export -> Label Studio -> import-labels: masks come back unchanged, errors name the task."""
import copy
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("label_studio_converter", reason="partsynth[annotation] not installed")

from checks import assert_import_round_trip  # noqa: E402
from flows.cli import main as cli  # noqa: E402
from pipeline.annotation.common import Selection  # noqa: E402
from pipeline.errors import ConfigError, DataError  # noqa: E402
from pipeline.annotation.label_studio import (export_label_studio, import_label_studio,  # noqa: E402
                                              label_map_results, results_label_map)
from pipeline.labels import IGNORE, LABEL_SETS  # noqa: E402
from refine_net.config import SynthConfig  # noqa: E402
from refine_net.synthesize import Synthesizer  # noqa: E402


def annotated(tasks):
    """Label Studio's export when the annotator accepted every pre-annotation as it was."""
    done = copy.deepcopy(tasks)
    for i, t in enumerate(done):
        t["id"] = i + 1
        t["annotations"] = [{"id": 1, "was_cancelled": False, "result": t.pop("predictions")[0]["result"]}]
    return done


def test_brush_round_trip_keeps_every_class_and_ignore():
    rng = np.random.default_rng(0)
    lm = rng.integers(0, 7, (37, 53)).astype(np.uint8)
    lm[:5, :5] = IGNORE
    results = label_map_results(lm, "pascal10")
    assert {r["value"]["brushlabels"][0] for r in results} == {*LABEL_SETS["pascal10"].names[1:7], "ignore"}
    assert np.array_equal(results_label_map(results, "pascal10", "t"), lm)


def test_export_orders_by_confidence_and_import_restores_the_labels(synth, tmp_path, demo_dir):
    done = export_label_studio(synth, tmp_path / "ls", document_root="/")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert done["tasks"] == len(tasks) == 8 and done["images_left_out"] == 0
    scores = [t["predictions"][0]["score"] for t in tasks]
    assert scores == sorted(scores)
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=")
    config = ET.fromstring((tmp_path / "ls" / "labeling_config.xml").read_text())
    names = [label.get("value") for label in config.iter("Label")]
    assert names == [*LABEL_SETS[done["label_set"]].names[1:], "ignore"]
    assert export_label_studio(synth, tmp_path / "few", Selection(limit=3))["tasks"] == 3
    assert export_label_studio(synth, tmp_path / "none", Selection(max_confidence=0.0))["tasks"] == 0

    (tmp_path / "export.json").write_text(json.dumps(annotated(tasks)))
    assert_import_round_trip(lambda lab, replace=False: import_label_studio(tmp_path / "export.json", lab,
                                                                            replace=replace),
                             synth, tmp_path / "labelled")


def test_import_errors_name_the_task(synth, tmp_path):
    export_label_studio(synth, tmp_path / "ls")
    tasks = annotated(json.loads((tmp_path / "ls" / "tasks.json").read_text()))
    tasks[1]["annotations"] = []                                      # not annotated: skipped
    bad_name = copy.deepcopy(tasks)
    bad_name[2]["annotations"][0]["result"][0]["value"]["brushlabels"] = ["hat"]
    (tmp_path / "a.json").write_text(json.dumps(bad_name))
    with pytest.raises(DataError, match="task 3: unknown label 'hat'"):
        import_label_studio(tmp_path / "a.json", tmp_path / "out_a")
    bad_size = copy.deepcopy(tasks)
    for r in bad_size[0]["annotations"][0]["result"]:
        r["original_width"] += 1
    (tmp_path / "b.json").write_text(json.dumps(bad_size))
    with pytest.raises(DataError, match="task 1"):
        import_label_studio(tmp_path / "b.json", tmp_path / "out_b")
    (tmp_path / "c.json").write_text(json.dumps(tasks))
    assert import_label_studio(tmp_path / "c.json", tmp_path / "out_c")["not_annotated"] == 1


def test_export_and_import_commands(synth, tmp_path, capsys):
    assert cli(["export", str(synth), "--out", str(tmp_path / "ls"), "--copy-images", "--limit", "2"]) == 0
    assert "2 tasks" in capsys.readouterr().out
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert all((tmp_path / "ls" / t["data"]["image"].split("?d=")[1]).is_file() for t in tasks)
    (tmp_path / "export.json").write_text(json.dumps(annotated(tasks)))
    assert cli(["import-labels", str(tmp_path / "export.json"), "--out", str(tmp_path / "lab")]) == 0
    assert "2 images imported" in capsys.readouterr().out
    assert cli(["export", str(tmp_path / "lab"), "--out", str(tmp_path / "x")]) == 1     # not synthesized
    assert "not a synthesized partsynth dataset" in capsys.readouterr().err


def test_corrected_people_join_the_next_bank(synth, checkpoint, demo_dir, tmp_path):
    export_label_studio(synth, tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    (tmp_path / "export.json").write_text(json.dumps(annotated(tasks)))
    import_label_studio(tmp_path / "export.json", tmp_path / "corrected")
    base = dict(checkpoint=str(checkpoint), data=str(demo_dir), out=str(tmp_path / "o"))
    before = Synthesizer(SynthConfig(**base))
    after = Synthesizer(SynthConfig(**base, extra_bank_data=(str(tmp_path / "corrected"),)))
    assert len(after.bank.exemplars) == len(before.bank.exemplars) + 8           # the 8 corrected people
    assert after.fingerprint != before.fingerprint
    with pytest.raises(ConfigError, match="no labelled people"):
        Synthesizer(SynthConfig(**base, extra_bank_data=(str(tmp_path / "ls"),)))
