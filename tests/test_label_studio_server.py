"""A real Label Studio server: the exported tasks go in through its API with their
predictions, every prediction is accepted as the annotation, the project comes back out
through its export API, and import-labels restores the synthesized label maps exactly.

Label Studio cannot share this project's environment (label-studio 1.23 pins numpy < 2.3,
opencv-python-headless 4.12 and protobuf 7, which breaks mediapipe), so it runs from its own
virtual environment: set ``PARTSYNTH_LABEL_STUDIO`` to its ``label-studio`` executable
(``.ci/run`` builds one); the test skips when none is found.
"""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from checks import assert_import_round_trip

pytestmark = pytest.mark.slow
pytest.importorskip("label_studio_converter", reason="partsynth[annotation] not installed")
requests = pytest.importorskip("requests")

EMAIL, PASSWORD = "partsynth@example.com", "partsynth-test-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    exe = os.environ.get("PARTSYNTH_LABEL_STUDIO") or shutil.which("label-studio")
    if not exe:
        pytest.skip("no label-studio executable (set PARTSYNTH_LABEL_STUDIO; see the module docstring)")
    data = tmp_path_factory.mktemp("label_studio")
    port = _free_port()
    # ML_BLOCK_LOCAL_IP and SSRF_PROTECTION_ENABLED off: the ML backend and its webhook run on 127.0.0.1 here
    env = dict(os.environ, LABEL_STUDIO_BASE_DATA_DIR=str(data), LOCAL_FILES_SERVING_ENABLED="true",
               LOCAL_FILES_DOCUMENT_ROOT="/", ML_BLOCK_LOCAL_IP="false", SSRF_PROTECTION_ENABLED="false")
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([exe, "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data), "--username", EMAIL, "--password", PASSWORD],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited with {proc.returncode}: {(data / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"label-studio did not answer in 240 s: {(data / 'server.log').read_text()[-2000:]}")
        session = requests.Session()
        session.get(f"{base}/user/login/", timeout=30)
        r = session.post(f"{base}/user/login/", timeout=30, headers={"Referer": f"{base}/user/login/"},
                         data={"email": EMAIL, "password": PASSWORD,
                               "csrfmiddlewaretoken": session.cookies.get("csrftoken")})
        assert r.ok and session.get(f"{base}/api/current-user/whoami", timeout=30).ok, r.text[:500]
        session.headers.update({"X-CSRFToken": session.cookies.get("csrftoken"), "Referer": base})
        yield base, session
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_tasks_through_a_real_label_studio_come_back_unchanged(label_studio, synth, tmp_path):
    from pipeline.annotation.label_studio import CONFIG_FILE, TASKS_FILE, export_label_studio, import_label_studio

    base, api = label_studio
    export_label_studio(synth, tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / TASKS_FILE).read_text())
    project = api.post(f"{base}/api/projects", timeout=60, json={
        "title": "partsynth round trip", "label_config": (tmp_path / "ls" / CONFIG_FILE).read_text()})
    assert project.status_code == 201, project.text[:500]
    pid = project.json()["id"]
    imported = api.post(f"{base}/api/projects/{pid}/import", timeout=120, json=tasks)
    assert imported.status_code == 201, imported.text[:500]
    assert imported.json()["task_count"] == len(tasks) == 8
    stored = api.get(f"{base}/api/tasks", params={"project": pid, "page_size": 100, "fields": "all"}, timeout=60)
    assert stored.ok, stored.text[:500]
    # the annotator sees the photo: a Local Storage connection of the project serves it
    first = stored.json()["tasks"][0]
    photo = first["data"]["partsynth"]["image"]
    assert api.get(f"{base}{first['data']['image']}", timeout=60).status_code != 200   # not before the connection
    storage = api.post(f"{base}/api/storages/localfiles", timeout=60, json={
        "project": pid, "title": "photos", "path": str(Path(photo).parent), "use_blob_urls": False})
    assert storage.status_code == 201, storage.text[:500]
    served = api.get(f"{base}{first['data']['image']}", timeout=60)
    assert served.status_code == 200 and served.content == Path(photo).read_bytes()
    for task in stored.json()["tasks"]:
        preds = api.get(f"{base}/api/predictions", params={"task": task["id"]}, timeout=60).json()
        assert len(preds) == 1 and preds[0]["score"] == pytest.approx(
            min(p["confidence"] for p in task["data"]["partsynth"]["people"]), abs=1e-4)
        # the annotator accepts the pre-annotation as it is
        done = api.post(f"{base}/api/tasks/{task['id']}/annotations", timeout=60,
                        json={"result": preds[0]["result"], "was_cancelled": False})
        assert done.status_code == 201, done.text[:500]
    export = api.get(f"{base}/api/projects/{pid}/export", params={"exportType": "JSON"}, timeout=120)
    assert export.ok, export.text[:500]
    (tmp_path / "export.json").write_bytes(export.content)
    assert_import_round_trip(lambda lab, replace=False: import_label_studio(tmp_path / "export.json", lab,
                                                                            replace=replace),
                             synth, tmp_path / "labelled")


@pytest.fixture()
def backend_server(checkpoint, tmp_path):
    """``partsynth serve`` with the session's refiner, as a user starts it; (URL, labelled folder)."""
    import sys

    port, out = _free_port(), tmp_path / "corrected"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--checkpoint", str(checkpoint),
                             "--port", str(port), "--labelled-out", str(out)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        yield url, out
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_label_studio_gets_predictions_from_partsynth_serve_and_sends_annotations_back(
        label_studio, backend_server, synth, tmp_path):
    from pipeline.annotation.label_studio import CONFIG_FILE, TASKS_FILE, export_label_studio
    from pipeline.readers.layouts import iter_records

    base, api = label_studio
    url, corrected = backend_server
    export_label_studio(synth, tmp_path / "ls")
    tasks = [{"data": t["data"]} for t in json.loads((tmp_path / "ls" / TASKS_FILE).read_text())[:3]]  # no predictions
    project = api.post(f"{base}/api/projects", timeout=60, json={
        "title": "partsynth backend", "label_config": (tmp_path / "ls" / CONFIG_FILE).read_text()})
    assert project.status_code == 201, project.text[:500]
    pid = project.json()["id"]
    ml = api.post(f"{base}/api/ml", timeout=60, json={"project": pid, "url": url, "title": "partsynth"})
    assert ml.status_code == 201, ml.text[:500]
    hook = api.post(f"{base}/api/webhooks/", timeout=60, json={
        "project": pid, "url": f"{url}/webhook", "send_payload": True, "send_for_all_actions": False,
        "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]})
    assert hook.status_code == 201, hook.text[:500]
    assert api.post(f"{base}/api/projects/{pid}/import", timeout=120, json=tasks).status_code == 201
    stored = api.get(f"{base}/api/tasks", params={"project": pid, "fields": "all"}, timeout=60).json()["tasks"]
    retrieved = api.post(f"{base}/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": pid},
                         timeout=300, json={"selectedItems": {"all": True, "excluded": []}})
    assert retrieved.ok, retrieved.text[:500]
    health = requests.get(f"{url}/health", timeout=10).json()
    for task in stored:
        preds = api.get(f"{base}/api/predictions", params={"task": task["id"]}, timeout=60).json()
        assert len(preds) == 1 and preds[0]["model_version"] == health["model_version"], preds
        assert preds[0]["result"] and 0 < preds[0]["score"] <= 1
    first = stored[0]
    pred = api.get(f"{base}/api/predictions", params={"task": first["id"]}, timeout=60).json()[0]
    done = api.post(f"{base}/api/tasks/{first['id']}/annotations", timeout=60,
                    json={"result": pred["result"], "was_cancelled": False})
    assert done.status_code == 201, done.text[:500]
    people = {p["person_id"] for p in first["data"]["partsynth"]["people"]}
    deadline = time.time() + 60
    while time.time() < deadline and not (corrected / "people.json").is_file():
        time.sleep(0.5)
    records = list(iter_records(corrected))
    assert {r.person_id for r in records} == people and all(r.label_map is not None for r in records)
