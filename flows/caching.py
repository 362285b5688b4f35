"""What Prefect's cross-run caches are keyed on, and the I/O-only retry rule.

Cached tasks use ``cache_policy=INPUTS + TASK_SOURCE`` with persisted results, and take
among their inputs the fingerprints made here: the content of the files they read
(:func:`pipeline.formats.files.tree_signature`, :func:`pipeline.formats.files.file_sha256`) and the source
code of the packages they call (:func:`code_fingerprint`), so that a rerun with unchanged
inputs and code recomputes nothing, and any change recomputes what depends on it.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from prefect.cache_policies import INPUTS, TASK_SOURCE

CACHED = INPUTS + TASK_SOURCE


def cached_except(*names: str):
    """:data:`CACHED` without the inputs ``names`` in the key (where data sits, not what it is)."""
    inputs = INPUTS
    for name in names:
        inputs = inputs - name
    return inputs + TASK_SOURCE


PACKAGES = ("pipeline", "refine_net", "parser_net")


@functools.lru_cache(maxsize=None)
def code_fingerprint(packages: tuple[str, ...] = PACKAGES) -> str:
    """Hex SHA-256 of the ``.py`` sources of ``packages`` (installed or in the checkout)."""
    import importlib

    h = hashlib.sha256()
    for name in packages:
        root = Path(importlib.import_module(name).__file__).parent
        for p in sorted(root.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def retry_on_io(task, task_run, state) -> bool:
    """Retry condition: only transient I/O failures (OSError other than a missing file)."""
    try:
        state.result()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    except Exception:  # noqa: BLE001 - anything else is a real error, not worth retrying
        return False
    return False
