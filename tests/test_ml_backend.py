"""partsynth serve, the Label Studio ML backend, through FastAPI's test client: predictions
equal what synthesis writes for the same people, bad requests get a JSON error naming the
field while the server keeps serving, and a submitted annotation lands in a labelled folder
that the readers take."""
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.formats import files
from pipeline.formats.folder import keypoints_to_json

pytest.importorskip("label_studio_converter", reason="partsynth[annotation] not installed")
from fastapi.testclient import TestClient  # noqa: E402

from flows.ml_backend import create_app  # noqa: E402
from flows.serve_cli import make_backend  # noqa: E402
from pipeline.annotation.label_studio import labeling_config, results_label_map  # noqa: E402

COCO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mmpose" / "coco" / "test_coco.json"


@pytest.fixture(scope="module")
def served(tiny_refiner, tmp_path_factory):
    out = tmp_path_factory.mktemp("served") / "labelled"
    backend = make_backend(str(tiny_refiner), None, Path("/"), out)
    return TestClient(create_app(backend)), backend, out


def demo_tasks(demo_dir, n=3):
    from pipeline.readers.layouts import keypoint_only_people

    people = keypoint_only_people(demo_dir)[:n]
    return people, [{"id": i, "data": {"image": f"/data/local-files/?d={str(p.image_path.resolve())[1:]}",
                                       "partsynth": {"people": [{"person_id": p.person_id,
                                                                 "keypoints": keypoints_to_json(p.keypoints)}]}}}
                    for i, p in enumerate(people)]


def test_predictions_are_the_labels_synthesis_writes(served, demo_dir, tiny_refiner, tmp_path):
    from refine_net.config import SynthConfig
    from refine_net.synthesize import Synthesizer

    client, backend, _ = served
    assert client.get("/health").json()["status"] == "UP"
    assert client.post("/setup", json={"schema": labeling_config(backend.label_set)}).json() == {
        "model_version": backend.model_version}
    people, tasks = demo_tasks(demo_dir)
    r = client.post("/predict", json={"tasks": tasks, "label_config": labeling_config(backend.label_set)})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    synth = Synthesizer(SynthConfig(checkpoint=str(tiny_refiner), data=str(demo_dir), out=str(tmp_path / "s")))
    synth.run(people, tmp_path / "s")
    written = {json.loads(p.read_text())["image"]: files.read_label_png(tmp_path / "s" / json.loads(p.read_text())["label"])
               for p in (tmp_path / "s" / "items").glob("*.json")}
    assert len(results) == 3
    for person, result in zip(people, results):
        assert result["model_version"] == backend.model_version and 0 < result["score"] <= 1
        got = results_label_map(result["result"], backend.label_set, "test")
        np.testing.assert_array_equal(got, written[str(person.image_path.resolve())])


def test_coco_keypoints_tasks_are_predicted(served):
    client, _, _ = served
    doc = json.loads(COCO.read_text())
    image = next(im for im in doc["images"] if any(a["image_id"] == im["id"] and a["num_keypoints"] > 8
                                                  for a in doc["annotations"]))
    kps = [a["keypoints"] for a in doc["annotations"] if a["image_id"] == image["id"] and a["num_keypoints"] > 0]
    task = {"id": 7, "data": {"image": str(COCO.parent.resolve() / image["file_name"]), "keypoints": kps}}
    r = client.post("/predict", json={"tasks": [task]})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["result"] and all(x["type"] == "brushlabels" for x in result["result"])
    assert result["result"][0]["original_height"] == image["height"]


def test_bad_requests_name_their_field_and_the_server_keeps_serving(served, demo_dir, tmp_path):
    client, backend, _ = served
    _, (good,) = demo_tasks(demo_dir, 1)
    photo = good["data"]["image"]
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    bad = {
        "tasks[0].data.image": [{"data": {}}, {"data": {"image": "/no/such/photo.jpg"}},
                                {"data": {"image": "http://example.com/a.jpg"}},
                                {"data": {"image": str(tmp_path / "broken.jpg")}},
                                {"data": {"image": "/data/local-files/?d=../../etc/passwd"}}],
        "tasks[0].data.keypoints": [{"data": {"image": photo, "keypoints": [1.0] * 50}},
                                    {"data": {"image": photo, "keypoints": ["a"] * 51}}],
        "tasks[0].data.keypoints[1]": [{"data": {"image": photo, "keypoints": [[10, 10, 2] * 17, [1, 1, 2] * 16]}}],
        "tasks[0].data": [{"image": photo}],
    }
    for field, tasks in bad.items():
        for task in tasks:
            r = client.post("/predict", json={"tasks": [task]})
            assert r.status_code == 400 and r.json()["field"] == field, (task, r.text)
            assert "Traceback" not in r.text
    r = client.post("/predict", json={"tasks": [good], "label_config": "<View><Image name='image'/></View>"})
    assert r.status_code == 400 and r.json()["field"] == "label_config" and "BrushLabels" in r.json()["error"]
    r = client.post("/predict", json={"tasks": "all of them"})
    assert r.status_code == 400 and r.json()["field"] == "tasks"
    r = client.post("/predict", content=b"{cut", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    r = client.post("/setup", json={"schema": "<View"})
    assert r.status_code == 400 and r.json()["field"] == "label_config"
    assert client.post("/predict", json={"tasks": [good]}).status_code == 200      # still serving


def test_a_submitted_annotation_lands_in_the_labelled_folder(served, demo_dir):
    from pipeline.readers.layouts import iter_records

    client, backend, out = served
    people, tasks = demo_tasks(demo_dir, 2)
    predicted = client.post("/predict", json={"tasks": tasks}).json()["results"]
    for task, prediction in zip(tasks, predicted):
        r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "task": task,
                                          "annotation": {"id": 1, "result": prediction["result"]}})
        assert r.status_code == 200 and r.json()["status"] == "saved", r.text
    again = client.post("/webhook", json={"action": "ANNOTATION_UPDATED", "task": tasks[0],
                                          "annotation": {"id": 1, "result": []}})              # corrected to nothing
    assert again.json()["status"] == "saved"
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {}}).json()["status"] == "ignored"
    records = {r.person_id: r for r in iter_records(out)}
    assert set(records) == {p.person_id for p in people}
    assert records[people[0].person_id].label_map.max() == 0                    # the update replaced it
    first = results_label_map(predicted[1]["result"], backend.label_set, "test")
    np.testing.assert_array_equal(records[people[1].person_id].label_map, first)
    r = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "task": tasks[0],
                                      "annotation": {"result": [{"type": "brushlabels", "original_width": 4,
                                                                 "original_height": 4, "value": {
                                                                     "rle": [0], "brushlabels": ["no such class"]}}]}})
    assert r.status_code == 400 and r.json()["field"] == "annotation.result"


def test_an_image_only_task_gets_its_person_from_blazepose(tmp_path):
    pytest.importorskip("mediapipe", reason="partsynth[pose] not installed")
    client = TestClient(create_app(make_backend(None, "pascal6", Path("/"), None)))     # the partition labeller
    photo = COCO.parent.resolve() / "000000000785.jpg"                                # one skier
    r = client.post("/predict", json={"tasks": [{"id": 1, "data": {"image": f"file://{photo}"}}]})
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    names = {x["value"]["brushlabels"][0] for x in result["result"]}
    assert {"head", "torso"} <= names and 0 < result["score"] <= 1, names
