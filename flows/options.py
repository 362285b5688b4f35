"""Command-line helpers shared by the ``partsynth`` commands (a leaf module: it imports no
other command module).

The options of a command that starts a run are generated from that run's pydantic config
(:func:`add_config_options`), so the CLI, the Prefect flow parameters and the saved
config cannot drift apart.  A run's values come, lowest precedence first, from the config
model's defaults, its profile, ``--config FILE`` (YAML or JSON) and the flags given.
"""
from __future__ import annotations

import argparse
import json
import logging
import types
import typing
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from pipeline.errors import ConfigError, DataError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def progress_bar(disable: bool = False):
    """A transient rich progress bar: description, bar, done/total, elapsed time (nothing
    shown with ``disable``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True, disable=disable)


def training_console() -> bool:
    """Set up a training command's console: INFO logs and progress on rank 0 of a
    ``torchrun`` run (or the one process), warnings only on the other ranks.  Returns
    whether this process is rank 0."""
    from refine_net.distributed import launched_world

    main = launched_world().is_main
    logging.basicConfig(level=logging.INFO if main else logging.WARNING, format="%(asctime)s %(message)s")
    return main


def with_item_progress(description: str, total: int | Callable[[], int | None], out: str | Path,
                       run: Callable[[], T]) -> T:
    """``run()`` under a progress bar that counts the item records appearing in ``out``
    (``out/items/*.json``: one per image done), refreshed every half second.  ``total``: the
    number of items, or a callable giving it once known (None before: a bar without an end)."""
    import threading

    from pipeline.formats.item_folder import item_files

    done = threading.Event()
    with progress_bar() as bar:
        task = bar.add_task(description, total=total() if callable(total) else total)

        def watch():
            while not done.wait(0.5):
                bar.update(task, completed=len(item_files(out)),
                           **({"total": total()} if callable(total) and total() is not None else {}))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            return run()
        finally:
            done.set()
            watcher.join()
            bar.update(task, completed=len(item_files(out)))


def interrupted(message: str) -> None:
    """End the command after Ctrl-C: print ``message`` as one line and exit 130 at once.

    Exiting without Python's at-exit handlers keeps Prefect's shutdown (unsent logs to a
    server that is going away) from printing tracebacks after the line; every finished
    file is already on disk (atomic writes), and the temporary server ends with this
    process (:mod:`flows.server`)."""
    import os
    import sys

    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def flag_of(model: type[BaseModel], name: str) -> str:
    """The command-line flag of a config field: ``--field-name`` unless the field names
    another in ``json_schema_extra={"flag": ...}``."""
    extra = model.model_fields[name].json_schema_extra or {}
    return extra.get("flag") or "--" + name.replace("_", "-")


def add_config_options(parser: argparse.ArgumentParser, model: type[BaseModel], skip: tuple[str, ...] = ()) -> None:
    """Add ``--config FILE`` and one flag per field of ``model`` (except ``skip``): booleans
    as ``--flag/--no-flag``, literals as choices, tuples as several values.  Flags not given
    stay absent from the namespace, so only what the user typed overrides the file."""
    parser.add_argument("--config", type=Path, help="YAML or JSON file with this run's config; flags override it")
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        kind = _unwrap_optional(field.annotation)
        default = " (required)" if field.is_required() else "" if field.default is None else \
            f" (default: {field.default})"
        kw: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS, help=(field.description or "") + default)
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            kw["choices"] = list(typing.get_args(kind))
        elif typing.get_origin(kind) is tuple:
            args = typing.get_args(kind)
            kw["type"] = args[0]
            kw["nargs"] = "*" if Ellipsis in args else len(args)
        else:
            kw["type"] = kind
        parser.add_argument(flag_of(model, name), **kw)


def read_config_file(path: str | Path) -> dict:
    """A run config from a YAML (``.yaml``/``.yml``) or JSON file; a run folder's
    ``config.json`` (``{"train": {...}, ...}``) gives its ``train`` part.  Raises
    ConfigError naming the file when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error of the user's file is reported as such
        raise ConfigError(f"{path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: "
                          f"{str(e).splitlines()[0]}") from None
    if isinstance(values, dict) and isinstance(values.get("train"), dict):
        values = values["train"]
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config fields")
    return values


def validate_config(model: type[M], values: dict) -> M:
    """``model`` from ``values``; a validation failure becomes one ConfigError line naming
    the flags concerned."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = err["loc"][0] if err["loc"] else None
            where = flag_of(model, loc) if loc in model.model_fields else (loc or "config")
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("; ".join(problems)) from None


def config_from_args(model: type[M], args: argparse.Namespace, base: dict | None = None) -> M:
    """The run config of a command: ``base`` (a preset), then ``--config``, then the flags."""
    values = dict(base or {})
    if getattr(args, "config", None):
        values.update(read_config_file(args.config))
    values.update({name: getattr(args, name) for name in model.model_fields if hasattr(args, name)})
    return validate_config(model, values)


#: errors the CLI prints as one line (exit 1) instead of a traceback
EXPECTED_ERRORS = (DataError, ConfigError, OSError)


def error_line(e: BaseException) -> str:
    """One line for an expected error: DataError/ConfigError as they read; an OSError as
    "PATH: what the system said" (``[Errno 30] Read-only file system: 'x'`` becomes
    ``x: Read-only file system``)."""
    if isinstance(e, OSError) and not isinstance(e, DataError) and e.strerror:
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        return f"{where}: {e.strerror}" if where is not None else e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


class _DropExpectedTracebacks(logging.Filter):
    """Drops the ERROR records Prefect's engine writes, with a traceback, for an exception
    the CLI will print as one line anyway."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, EXPECTED_ERRORS)


@contextmanager
def quiet_prefect_tracebacks():
    """While the block runs, Prefect's flow- and task-run loggers drop their tracebacks of
    :data:`EXPECTED_ERRORS` (the run still ends Failed, naming the error in one line)."""
    flt = _DropExpectedTracebacks()
    loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)
