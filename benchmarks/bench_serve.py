"""Latency and throughput of ``partsynth serve`` (the Label Studio ML backend), and its memory
over many requests.

    python benchmarks/bench_serve.py --checkpoint data/runs/demo/refiner/last.pt --data data/demo \
        --tasks 100 --clients 4 --requests 1000

Starts the server as a user does (a subprocess on a free port), then: ``--tasks`` one-task
``/predict`` requests one after the other (p50 / p95 / max latency, ms); the same tasks
from ``--clients`` threads at once (requests/s); ``--requests`` more requests in all, the
server's RSS read from /proc after the first 100 and at the end (flat memory: ratio near
1.00).  Tasks are the keypoint-only people of ``--data`` (any partsynth folder), as
``partsynth export`` words them (``data.partsynth``).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from pipeline.formats.folder import keypoints_to_json
from pipeline.readers.layouts import keypoint_only_people


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    args = p.parse_args()
    people = keypoint_only_people(args.data)
    tasks = [{"id": i, "data": {"image": str(Path(r.image_path).resolve()), "partsynth": {"people": [
        {"person_id": r.person_id, "keypoints": keypoints_to_json(r.keypoints)}]}}} for i, r in enumerate(people)]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--checkpoint", args.checkpoint,
                               "--port", str(port), "--threads", str(args.threads), "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=60) as client:
            for _ in range(240):
                try:
                    if client.get(f"{url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)

            def one(i: int, c: httpx.Client = client) -> float:
                t = time.perf_counter()
                r = c.post(f"{url}/predict", json={"tasks": [tasks[i % len(tasks)]]})
                r.raise_for_status()
                return time.perf_counter() - t

            one(0)                                                       # warm-up: the first forward pass
            lat = np.array([one(i) for i in range(args.tasks)]) * 1000
            rss_start = rss_mib(server.pid)
            done, lock = [0], threading.Lock()
            per_client = args.tasks

            def worker(k: int) -> None:
                with httpx.Client(timeout=60) as c:
                    for i in range(per_client):
                        one(k * per_client + i, c)
                        with lock:
                            done[0] += 1

            t = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            rps = done[0] / (time.perf_counter() - t)
            rest = max(0, args.requests - args.tasks - done[0])
            for i in range(rest):
                one(i)
            rss_end = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    total = args.tasks + done[0] + rest
    print(f"{os.cpu_count()} cpus, server torch threads {args.threads}, {len(tasks)} distinct tasks from {args.data}")
    print("| sequential p50 ms | p95 ms | max ms | clients | requests/s | RSS after 100 MiB | "
          f"after {total} MiB | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {np.percentile(lat, 50):.1f} | {np.percentile(lat, 95):.1f} | {lat.max():.1f} | {args.clients} | "
          f"{rps:.1f} | {rss_start:.0f} | {rss_end:.0f} | {rss_end / rss_start:.2f} |")


if __name__ == "__main__":
    main()
