"""A temporary Prefect API server for one command, tied to the command's life.

Before the server stops, Prefect's queued logs and events are sent to it, so a successful
run ends without "Error logging to API" / "Error flushing events" tracebacks.

Prefect starts its own temporary server when ``PREFECT_API_URL`` is unset, but that
uvicorn process outlives a ``partsynth`` killed with SIGKILL (about 220 MB, re-parented
to init).  :func:`temporary_server` starts the same server with the kernel's
parent-death signal set (Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``), so it ends with the
command however the command ends, and stops it on a normal exit.  It runs in a session of
its own with its output written to a log file, so a Ctrl-C in the terminal reaches only
the command (which then ends the server) and the server's shutdown prints nothing.  The log
(``prefect-server-<pid>.log`` in :func:`pipeline.formats.files.cache_dir`) is removed after a block
that ends normally and kept, with its path printed, after one that raised an error: an API error
such as "503 Service Unavailable" then comes with the server's side of the story.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent ends (Linux; a no-op
    elsewhere).  Runs in a child between fork and exec, or at the start of a worker."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass                              # not Linux: the server is still stopped on a normal exit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flush_to_server(timeout: float = 10.0) -> None:
    """Send the logs and events Prefect still queues while the server is up: stopping the
    server first made them fail at interpreter exit ("Error logging to API", "Error
    flushing events")."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


@contextlib.contextmanager
def temporary_server(timeout: float = 60.0) -> Iterator[str | None]:
    """Yield the API URL of a Prefect server for the duration of the block: the one
    ``PREFECT_API_URL`` names (yields it, starts nothing), or a temporary local one that
    dies with this process.  Raises ConfigError when the server does not come up."""
    import httpx
    import prefect
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipeline.errors import ConfigError

    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    from pipeline.formats.files import cache_dir

    port = _free_port()
    log_path = cache_dir() / f"prefect-server-{os.getpid()}.log"
    log = open(log_path, "wb")
    env = dict(os.environ, PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1", PREFECT__SERVER_FINAL="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port), "--log-level",
         "error", "--lifespan", "on"], env=env, preexec_fn=die_with_parent, start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT)
    log.close()                           # the server holds its own descriptor
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise ConfigError(f"the temporary Prefect server did not start on port {port}")
            time.sleep(0.3)
        # the process-wide settings too: threads that Prefect starts outside this context
        # (its process pool's submitter and message forwarder) read those, and without the
        # URL there they started a server of their own
        os.environ["PREFECT_API_URL"] = url
        refresh_global_settings_context()
        try:
            with temporary_settings({PREFECT_API_URL: url}):
                yield url
        finally:
            _flush_to_server()                  # the process-wide settings still name the server
            os.environ.pop("PREFECT_API_URL", None)
            refresh_global_settings_context()
    except Exception:
        print(f"the temporary Prefect server's log: {log_path}", file=sys.stderr)
        raise
    else:
        log_path.unlink(missing_ok=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
