"""Prefect flows under one session-scoped test harness: caching across runs, new images
only, a killed run resumed, the main job's report, the CLI's errors."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect.client.schemas.sorting import TaskRunSort

from flows.caching import code_fingerprint
from flows.cli import main as cli
from flows.synthesis import list_images, listing_file, prune_listings, synthesize_labels
from pipeline.errors import DataError
from pipeline.formats.listing import read_people, write_listing
from pipeline.formats.files import tree_signature
from refine_net.config import SynthConfig
from checks import assert_scores_consistent


def synth_cfg(checkpoint, data, out, **kw) -> SynthConfig:
    return SynthConfig(checkpoint=str(checkpoint), data=str(data), out=str(out), **kw)


def task_states(flow_state, final=("Completed", "Cached", "Failed"), timeout: float = 20.0) -> dict[str, list[str]]:
    """{task name prefix: [state names]} of a finished flow run.  Task states reach the
    server asynchronously, so this waits (up to ``timeout`` s) until none is pending."""
    deadline = time.time() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [flow_state.state_details.flow_run_id]}),
                limit=200, sort=TaskRunSort.EXPECTED_START_TIME_ASC)
        if all(r.state and r.state.name in final for r in runs) or time.time() > deadline:
            break
        time.sleep(0.5)
    out = {}
    for r in runs:
        out.setdefault(r.name.rsplit("-", 1)[0], []).append(r.state.name)
    return out


def test_list_images_unit(demo_dir, tmp_path):
    listed = list_images.fn(str(demo_dir), None, "any", str(tmp_path / "listing.jsonl"))
    images = listed["images"]
    assert listed["skipped"] == [] and len(images) == 8 and all(len(ranges) == 1 for _, _, ranges in images)
    people = [read_people(tmp_path / "listing.jsonl", ranges)[0] for _, _, ranges in images]
    assert [p["image"] for p in people] == [image for image, _, _ in images]
    assert all(len(p["image_sha256"]) == 64 and p["keypoints"] for p in people)
    assert len({key for _, key, _ in images}) == 8
    first = code_fingerprint.__wrapped__()                 # recomputed, not the lru_cache'd value
    assert len(first) == 16 and first == code_fingerprint.__wrapped__()
    assert code_fingerprint.__wrapped__(("pipeline",)) != first     # other sources, other fingerprint


def add_people(folder: Path, n: int) -> None:
    """Add n keypoint-only people: copies of existing unlabelled images under new names."""
    people = json.loads((folder / "people.json").read_text())
    src = [p for p in people if not p.get("label")][:n]
    for i, p in enumerate(src):
        new = dict(p, person_id=f"new{i}", image=f"images/new{i}.png")
        shutil.copy(folder / p["image"], folder / new["image"])
        people.append(new)
    (folder / "people.json").write_text(json.dumps(people))


def test_rerun_is_cached_and_new_images_only_are_processed(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    data = Path(shutil.copytree(demo_dir, tmp_path / "demo"))
    out = tmp_path / "synth"
    cfg = synth_cfg(tiny_refiner, data, out, chunk_size=2)           # about 4 chunks of 8 images
    first = synthesize_labels(cfg, return_state=True)
    assert first.is_completed() and first.result()["people_labelled"] == 8
    second = task_states(synthesize_labels(cfg, return_state=True))
    assert set(sum(second.values(), [])) == {"Cached"}, second      # nothing recomputed ...
    assert "synthesize_chunk" not in second                          # ... nor a chunk looked at (run.json)
    labels_before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (out / "labels").glob("*.png")}

    add_people(data, 3)
    third_state = synthesize_labels(cfg, return_state=True)
    third = task_states(third_state)["synthesize_chunk"]
    totals = third_state.result()
    assert totals["people_labelled"] == 11 and totals["images_done"] == 3 and totals["images_reused"] == 8
    assert 1 <= third.count("Completed") <= 3 and len(third) == third.count("Completed"), third   # only new chunks
    # the old images' labels were neither rewritten nor changed
    assert all((out / "labels" / n).read_bytes() == b and (out / "labels" / n).stat().st_mtime_ns == t
               for n, (b, t) in labels_before.items())


def test_a_label_replaced_with_its_old_time_is_redone(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    cfg = synth_cfg(tiny_refiner, demo_dir, tmp_path / "synth", chunk_size=2)
    assert synthesize_labels(cfg)["images_done"] == 8
    labels = sorted((tmp_path / "synth" / "labels").glob("*.png"), key=lambda p: p.stat().st_size)
    small, large = labels[0], labels[-1]
    assert small.stat().st_size != large.stat().st_size
    when = small.stat().st_mtime_ns
    shutil.copyfile(large, small)                      # another image's label, restored with the old time
    os.utime(small, ns=(when, when))
    totals = synthesize_labels(cfg)
    assert totals["images_done"] == 1 and totals["images_reused"] == 7, totals
    assert small.read_bytes() != large.read_bytes()


def test_a_new_k_reuses_the_prior_bank(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    first = task_states(synthesize_labels(synth_cfg(tiny_refiner, demo_dir, tmp_path / "k3", k=3), return_state=True))
    other_k = synth_cfg(tiny_refiner, demo_dir, tmp_path / "k1", k=1)
    second = task_states(synthesize_labels(other_k, return_state=True))
    assert first["index_bank"] in (["Completed"], ["Cached"]) and second["index_bank"] == ["Cached"], second
    assert second["synthesize_chunk"] == ["Completed"] * len(second["synthesize_chunk"])   # the labels are redone


def test_killed_synthesis_resumes_without_partial_files(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    from pipeline.demo import write_demo_set

    data = write_demo_set(tmp_path / "many", num_labelled=0, num_keypoint_only=60, size=96, seed=5)
    out = tmp_path / "synth"
    code = ("import sys; from flows.synthesis import synthesize_labels, task_runner; "
            "from refine_net.config import SynthConfig; "
            "synthesize_labels.with_options(task_runner=task_runner(None, 1))(SynthConfig(checkpoint=sys.argv[1], "
            f"data=sys.argv[2], out=sys.argv[3], bank_data={str(demo_dir)!r}))")
    env = dict(os.environ, PREFECT_API_URL=prefect_harness)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tiny_refiner), str(data), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    items = out / "items"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(items.glob("*.json"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(items.glob("*.json")))
    assert 3 <= done_at_kill < 60, "the run was not stopped mid-way"
    totals = synthesize_labels(synth_cfg(tiny_refiner, data, out, bank_data=str(demo_dir)))
    assert totals["people_labelled"] == 60 and len(list(items.glob("*.json"))) == 60
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    clean = synthesize_labels(synth_cfg(tiny_refiner, data, tmp_path / "clean", bank_data=str(demo_dir)))
    assert clean["people_labelled"] == 60
    for p in (out / "labels").glob("*.png"):
        assert p.read_bytes() == (tmp_path / "clean" / "labels" / p.name).read_bytes()


def test_main_job_writes_report_and_artifacts(prefect_harness, demo_dir, tmp_path):

    from flows.experiment import run_experiment
    from flows.experiment_config import ExperimentConfig

    result = run_experiment(ExperimentConfig(labelled=str(demo_dir), keypoint_only=(str(demo_dir),),
                                             work=str(tmp_path / "work"), refiner_epochs=1, parser_iterations=4,
                                             finetune_iterations=2, threads=2, reports=str(tmp_path / "reports")))
    rows = result["parsers"]
    for run in ("parser_labelled", "parser_semi"):           # trained at once, one thread each
        assert json.loads((tmp_path / "work" / run / "config.json").read_text())["train"]["threads"] == 1
    assert set(rows) == {"labelled only", "labelled + synthetic"}
    for r in rows.values():
        assert_scores_consistent(r, images=3)
    synth = result["synthetic_labels"]           # the 3 val people, synthesized as if keypoint-only
    assert synth["images"] == 3 and synth["images_unlabelled"] == 0 and 0 < synth["silhouette_iou"] < 1
    from flows.reports import payoff_verdict

    assert result["verdict"] == payoff_verdict(rows) and result["verdict"].startswith("Synthetic people")
    (report,) = (tmp_path / "reports").iterdir()
    assert {p.name for p in report.iterdir()} >= {"metrics.json", "table.md", "config.json", "predictions_val.png"}
    table = (report / "table.md").read_text()
    assert "labelled + synthetic" in table and result["verdict"] in table and "val images, made as if" in table
    assert json.loads((report / "config.json").read_text())["synthetic_labels_val"]["images"] == 3
    refiner = result["refiner"]                  # 1 epoch: its val crops against its prior's
    assert refiner["epochs"] == 1 and 0 < refiner["val_miou"] < 1 and 0 < refiner["prior_val_miou"] < 1
    assert "Refiner after 1 epoch: " in table
    # raw filter request: this client build sends nulls the server rejects for artifact filters
    arts = httpx.post(f"{prefect_harness}/artifacts/filter", json={
        "artifacts": {"key": {"any_": ["parser-miou", "parser-report"]}}, "limit": 50, "offset": 0,
        "sort": "CREATED_DESC"}).raise_for_status().json()
    assert {a["type"] for a in arts} == {"table", "markdown"}
    assert "labelled only" in next(a["data"] for a in arts if a["type"] == "table")


def test_cli_errors_are_clear(capsys):
    assert cli(["run", "--preset", "ccp"]) == 1
    assert "--data-root" in capsys.readouterr().err
    assert cli(["run", "--preset", "ccp", "--data-root", "/nonexistent"]) == 1
    assert "not found" in capsys.readouterr().err


def test_tree_signature_changes_with_files(tmp_path):
    (tmp_path / "a.txt").write_text("1")
    s1 = tree_signature(tmp_path)
    (tmp_path / "b.txt").write_text("2")
    assert tree_signature(tmp_path) != s1
    (tmp_path / ".hidden").write_text("x")
    assert tree_signature(tmp_path) == tree_signature(tmp_path)


def test_tree_signature_sees_content_behind_an_old_mtime(tmp_path):
    """A file replaced by another of the same size, its old modification time restored."""
    import os

    folder, photo = tmp_path / "photos", tmp_path / "photos" / "a.jpg"
    folder.mkdir()
    photo.write_bytes(b"A" * 100_000)
    ann = tmp_path / "people.json"
    ann.write_text('{"images": [1]}')
    before = tree_signature(folder), tree_signature(ann)
    st, st_ann = photo.stat(), ann.stat()
    photo.write_bytes(b"B" + b"A" * 99_999)
    ann.write_text('{"images": [2]}')
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(ann, ns=(st_ann.st_atime_ns, st_ann.st_mtime_ns))
    assert photo.stat().st_size == st.st_size and photo.stat().st_mtime_ns == st.st_mtime_ns
    assert tree_signature(folder) != before[0] and tree_signature(ann) != before[1]
    photo.write_bytes(b"A" * 100_000)                          # the old content back: the old signature
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tree_signature(folder) == before[0]
    # an annotation file's signature covers the photos beside it (not read): a photo that
    # becomes a link to another file changes it, though the file's content stays the same
    beside = tree_signature(ann)
    (tmp_path / "b.jpg").write_bytes(b"C" * 10)
    assert tree_signature(ann) != beside
    with_b = tree_signature(ann)
    (tmp_path / "b.jpg").unlink()
    (tmp_path / "b.jpg").symlink_to(photo)
    assert tree_signature(ann) not in (beside, with_b)


def test_cli_synthesize_inspect_and_evaluate_flow(prefect_harness, demo_dir, tiny_refiner, tmp_path, capsys):
    from flows.training import evaluate, train_parser
    from parser_net.config import ParserTrainConfig

    out = tmp_path / "synth"
    assert cli(["synthesize", "--checkpoint", str(tiny_refiner), "--data", str(demo_dir), "--out", str(out),
                "--workers", "1"]) == 0
    assert "'people_labelled': 8" in capsys.readouterr().out
    assert cli(["inspect", str(out), "--no-priors"]) == 0
    printed = capsys.readouterr().out
    assert "lowest confidence" in printed and (out / "inspect" / "index.html").exists()
    ckpt = train_parser(ParserTrainConfig(data=str(demo_dir), out_dir=str(tmp_path / "parser"), synthetic=(str(out),),
                                          iterations=3, finetune_iterations=1, width=4, size=64, threads=1,
                                          model="joint", structure_loss=True, pose_data=str(demo_dir),
                                          pose_split="val"))
    assert json.loads((tmp_path / "parser" / "metrics.json").read_text())["pose"]["people"] == 3
    rows = evaluate({"tiny": ckpt}, str(demo_dir), reports=str(tmp_path / "reports"))
    assert rows["tiny"]["images"] == 3
    (report,) = (tmp_path / "reports").iterdir()
    assert "tiny" in (report / "table.md").read_text()


def test_refiner_line_warns_when_the_refiner_makes_its_prior_worse():
    from flows.reports import refiner_line

    assert refiner_line({"epochs": 6, "val_miou": 0.643, "prior_val_miou": 0.812, "still_improving": True}) == (
        "Refiner after 6 epochs: 64.3 mIoU on the val crops; the prior it refines: 81.2. Its labels are worse "
        "than the morphed masks it starts from: it was still improving, train it longer (--refiner-epochs).")
    assert refiner_line({"epochs": 40, "val_miou": 0.797, "prior_val_miou": 0.812,
                         "still_improving": False}).endswith("it had stopped improving (compare both: "
                                                             "partsynth evaluate-refiner).")
    assert "worse" not in refiner_line({"epochs": 40, "val_miou": 0.81, "prior_val_miou": 0.812})
    assert refiner_line({"epochs": 3, "val_miou": None, "prior_val_miou": None}) == ""


def test_payoff_verdict_names_help_noise_and_harm():
    from flows.reports import payoff_verdict

    def rows(base, mixed):
        return {"labelled only": {"mean_iou": base}, "labelled + synthetic": {"mean_iou": mixed}}

    assert payoff_verdict(rows(0.40, 0.43)) == "Synthetic people help: +3.0 mIoU over labelled only at the same compute."
    edge = payoff_verdict(rows(0.511, 0.5215))
    assert edge.startswith("Synthetic people help: +1.0 mIoU") and "edge of seed noise" in edge and "3 seeds" in edge
    assert payoff_verdict(rows(0.432, 0.430)).startswith("Synthetic people: -0.2 mIoU at the same compute, within")
    assert "-0.6 mIoU at the same compute, within one run's seed noise" in payoff_verdict(rows(0.493, 0.487))
    assert payoff_verdict(rows(0.40, 0.409)).startswith("Synthetic people: +0.9 mIoU at the same compute, within")
    assert payoff_verdict(rows(0.434, 0.418)).startswith("Synthetic people do not help here (-1.6 mIoU")


def test_a_listing_finds_each_images_people_wherever_they_sit(tmp_path):
    people = [("/a.jpg", "sha-a", {"person_id": "1"}), ("/b.jpg", "sha-b", {"person_id": "2"}),
              ("/a.jpg", "sha-a", {"person_id": "3", "keypoints": [[1.5, 2.0, 1.0]]})]
    index = write_listing(people, tmp_path / "l.jsonl")
    assert [e.image for e in index] == ["/a.jpg", "/b.jpg"]                 # first appearance
    assert [p["person_id"] for p in read_people(tmp_path / "l.jsonl", index[0].ranges)] == ["1", "3"]
    assert read_people(tmp_path / "l.jsonl", index[0].ranges)[1]["keypoints"] == [[1.5, 2.0, 1.0]]
    changed = write_listing([people[0], people[1], ("/a.jpg", "sha-a", {"person_id": "3", "keypoints": [[1.5, 2.5, 1.0]]})],
                            tmp_path / "m.jsonl")
    assert changed[0].key != index[0].key and changed[1].key == index[1].key   # one joint moved: that image only
    moved = write_listing([("/c.jpg", "sha-c", {"person_id": "0"}), *people], tmp_path / "n.jsonl")
    assert [e.key for e in moved[1:]] == [e.key for e in index]              # offsets moved, keys kept
    with pytest.raises(DataError, match="n.jsonl: listing changed"):
        read_people(tmp_path / "n.jsonl", [[1, 5]])


def test_a_changed_input_replaces_its_old_listing(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTSYNTH_CACHE", str(tmp_path))
    old, new = listing_file(("data.json", None), ("sig1", "code")), listing_file(("data.json", None), ("sig2", "code"))
    other = listing_file(("other.json", None), ("sig1", "code"))
    assert len({old, new, other}) == 3 and old.parent == tmp_path
    for p in (old, new, other):
        p.write_text("{}\n")
    prune_listings(new)
    assert not old.exists() and new.exists() and other.exists()
