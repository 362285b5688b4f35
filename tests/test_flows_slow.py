"""Slow flow tests (CI runs them): a local Dask cluster, the inspect page in headless
Chromium, and a schedule served against a real Prefect server."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flows.synthesis import synthesize_labels, task_runner
from pipeline.formats import files
from refine_net.config import SynthConfig

pytestmark = pytest.mark.slow


def test_dask_cluster_gives_the_single_machine_output(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        flow = synthesize_labels.with_options(task_runner=task_runner(cluster.scheduler_address, 1))
        on_dask = flow(SynthConfig(checkpoint=str(tiny_refiner), data=str(demo_dir), out=str(tmp_path / "dask"),
                                   chunk_size=2))           # several chunks, so both workers label
    single = synthesize_labels(SynthConfig(checkpoint=str(tiny_refiner), data=str(demo_dir),
                                           out=str(tmp_path / "single")))
    assert on_dask["people_labelled"] == single["people_labelled"] == 8
    names = sorted(p.name for p in (tmp_path / "single" / "labels").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "dask" / "labels").glob("*.png"))
    for n in names:
        assert (tmp_path / "dask" / "labels" / n).read_bytes() == (tmp_path / "single" / "labels" / n).read_bytes()
    people = [json.loads((tmp_path / d / "people.json").read_text()) for d in ("dask", "single")]
    assert people[0] == people[1]


def test_temporary_server_keeps_its_log_only_after_an_error(tmp_path, monkeypatch, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.server import temporary_server

    monkeypatch.setenv("PARTSYNTH_CACHE", str(tmp_path))
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with temporary_server() as url:
            assert httpx.get(f"{url}/health").status_code == 200
        assert not list(tmp_path.glob("prefect-server-*.log"))
        with pytest.raises(RuntimeError, match="boom"):
            with temporary_server():
                raise RuntimeError("boom")
    (log,) = tmp_path.glob("prefect-server-*.log")
    assert f"the temporary Prefect server's log: {log}" in capsys.readouterr().err


def test_inspect_page_renders_thumbnails_in_chromium(prefect_harness, demo_dir, tiny_refiner, tmp_path):
    from flows.inspect import inspect_dataset

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    out = tmp_path / "synth"
    synthesize_labels(SynthConfig(checkpoint=str(tiny_refiner), data=str(demo_dir), out=str(out)))
    stats = inspect_dataset(str(out))
    assert stats["people"] == 8 and sum(stats["confidence_histogram"].values()) == 8
    assert abs(sum(stats["class_pixel_share"].values()) - 1) < 1e-6
    page = Path(stats["page"])
    assert len(list((page.parent / "thumbs").glob("*-prior.png"))) == 8
    def browse(url: str, *extra: str) -> str:
        return subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=5000", *extra, url],
            capture_output=True, text=True, timeout=120, cwd=tmp_path).stdout

    dom = browse(page.as_uri(), "--dump-dom")
    loaded = re.search(r'data-thumbs-loaded="(\d+)"', dom)
    total = re.search(r'data-thumbs-total="(\d+)"', dom)
    assert loaded and total, dom[:500]
    assert int(total.group(1)) == 24 and int(loaded.group(1)) == 24      # 8 people x image, prior, label
    assert re.search(r'data-visible-rows="8"', dom)
    # filters and the large preview, preset from the URL fragment
    confs = sorted(float(c) for c in re.findall(r'data-conf="([0-9.]+)"', dom))
    person = re.search(r'data-id="([^"]+)"', dom).group(1)
    dom = browse(f"{page.as_uri()}#source=partsynth&min={confs[4]}&person={person}", "--dump-dom")
    assert re.search(r'data-visible-rows="(\d+)"', dom).group(1) == str(sum(c >= confs[4] for c in confs))
    assert f'data-preview="{person}"' in dom and int(re.search(r'data-preview-width="(\d+)"', dom).group(1)) > 384
    classes = re.findall(r'data-classes="([^"]*)"', dom)
    rare = min({c for cs in classes for c in cs.strip("|").split("|")}, key=lambda c: sum(f"|{c}|" in cs for cs in classes))
    dom = browse(f"{page.as_uri()}#class={rare}", "--dump-dom")
    assert re.search(r'data-visible-rows="(\d+)"', dom).group(1) == str(sum(f"|{rare}|" in cs for cs in classes))
    browse(f"{page.as_uri()}#person={person}", "--screenshot=preview.png", "--window-size=1000,700")
    shot = files.read_image(tmp_path / "preview.png")
    assert shot.shape[:2] == (700, 1000) and shot.std() > 10           # the preview shows a picture


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_interval_schedule_runs_on_a_real_server(demo_dir, tiny_refiner, tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_API_URL=api, PARTSYNTH_CACHE=str(tmp_path / "cache"))
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    served = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("prefect server did not start")
        out = tmp_path / "synth"
        served = subprocess.Popen([sys.executable, "-m", "flows.cli", "schedule", "--interval", "5", "--name", "test",
                                   "--checkpoint", str(tiny_refiner), "--data", str(demo_dir), "--out", str(out)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline, completed = time.time() + 300, []
        while time.time() < deadline and not completed:
            time.sleep(3)
            runs = httpx.post(f"{api}/flow_runs/filter", json={
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 10, "offset": 0,
                "sort": "EXPECTED_START_TIME_DESC"}).json()
            completed = [r for r in runs if r.get("deployment_id")]
        assert completed, "no scheduled run completed"
        assert len(json.loads((out / "people.json").read_text())) == 8
    finally:
        for proc in (served, server):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


def default_sigint() -> None:
    """In the child before it runs Python: Ctrl-C back to its default, so that Python turns
    it into KeyboardInterrupt even when this test runs with SIGINT ignored (as a background
    job of a shell without job control does, e.g. ``nohup .ci/run &``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_synthesis(demo_dir, tiny_refiner, tmp_path, **popen):
    """``partsynth synthesize`` of 60 keypoint-only people, one image per flow task (an
    interrupt takes effect between tasks), in a subprocess with no PREFECT_API_URL, once it
    has written 2 items: (process, output folder, the temporary
    Prefect server processes it started)."""
    import psutil

    from pipeline.demo import write_demo_set

    data = write_demo_set(tmp_path / "many", num_labelled=0, num_keypoint_only=60, size=96, seed=5)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PARTSYNTH_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "synth"
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "synthesize", "--checkpoint", str(tiny_refiner),
                             "--data", str(data), "--out", str(out), "--bank-data", str(demo_dir), "--workers", "1",
                             "--chunk-size", "1"],
                            env=env, preexec_fn=default_sigint, **popen)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and len(list((out / "items").glob("*.json"))) < 2:
        time.sleep(0.05)
    servers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if "prefect.server.api.server:create_app" in " ".join(c.cmdline())]
    return proc, out, servers


def test_killed_command_takes_its_prefect_server_along(demo_dir, tiny_refiner, tmp_path):
    import psutil

    proc, _, servers = start_synthesis(demo_dir, tiny_refiner, tmp_path, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
    assert servers, "no temporary server was started by the command"
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(servers, timeout=20)
    assert not alive, f"server processes outlived the killed command: {[p.pid for p in alive]}"


def test_a_command_ends_without_shutdown_errors(demo_dir, tiny_refiner, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PARTSYNTH_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "flows.cli", "synthesize", "--checkpoint", str(tiny_refiner),
                           "--data", str(demo_dir), "--out", str(tmp_path / "synth"), "--workers", "1"],
                          env=env, capture_output=True, text=True, timeout=300)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-2000:]
    assert "'people_labelled': 8" in printed
    assert "Error logging to API" not in printed and "Error flushing" not in printed and "Traceback" not in printed


def test_the_main_job_trains_its_parsers_at_once_on_the_command_s_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PARTSYNTH_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--data-root", str(tmp_path / "demo"),
                           "--refiner-epochs", "1", "--parser-iterations", "4", "--finetune-iterations", "2",
                           "--work", str(tmp_path / "work"), "--reports", str(tmp_path / "reports"), "--threads", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-2000:]
    assert "for flow 'train-parsers'" in printed and printed.count("parser: loss") == 2
    # the parser processes' logs reach the command's own server: no second one is started
    assert "Starting temporary server" not in printed and "Traceback" not in printed, printed[-3000:]


def test_ctrl_c_prints_one_line_and_keeps_the_work(demo_dir, tiny_refiner, tmp_path):
    import psutil

    proc, out, servers = start_synthesis(demo_dir, tiny_refiner, tmp_path, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
    # Freeze the command, check that its work is unfinished, and let it go on with Ctrl-C
    # already pending: the interrupt lands on work that is provably still running, whatever
    # the machine's load (a plain SIGINT raced the last items on a fast machine).
    proc.send_signal(signal.SIGSTOP)
    stopped = time.time() + 10
    while proc.poll() is None and psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED:
        assert time.time() < stopped, "SIGSTOP did not stop the command"
        time.sleep(0.01)
    assert proc.poll() is None, "the command ended before it could be interrupted"
    before = len(list((out / "items").glob("*.json")))
    assert before < 60
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted; ") and "images done" in last and "rerun to resume" in last
    assert "Traceback" not in stderr and "Error logging to API" not in stderr
    gone, alive = psutil.wait_procs(servers, timeout=20)
    assert not alive
    done = len(list((out / "items").glob("*.json")))
    # finished work kept, no partial file, and no queued image started after the interrupt: the
    # chunk running then finishes (a few more at most, while the interrupt reaches the flow)
    assert 2 <= before <= done <= before + 5 and not list(out.rglob(".partsynth-tmp-*")), (before, done)
