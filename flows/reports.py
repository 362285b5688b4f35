"""Run reports: ``reports/<run>/`` on disk and the matching Prefect artifacts."""
from __future__ import annotations

import re
import time
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline.files import write_json
from parser_net.evaluate import scores_markdown


def report_dir(root: str | Path) -> Path:
    """``root/<flow run name>`` (a timestamp outside a flow run), created."""
    from prefect.runtime import flow_run

    name = flow_run.name or time.strftime("run-%Y%m%d-%H%M%S")
    out = Path(root) / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    out.mkdir(parents=True, exist_ok=True)
    return out


def publish_scores(out: Path, rows: dict[str, dict], config: dict, extra_md: str = "") -> str:
    """Write ``metrics.json``, ``table.md`` and ``config.json`` to ``out`` and publish a
    table artifact (``parser-miou``: one row per model) and a markdown summary
    (``parser-report``).  ``rows``: {model name: ParsingScores.as_dict() (+ images)}.
    Returns the markdown table."""
    table = scores_markdown(rows)
    write_json(out / "metrics.json", rows)
    write_json(out / "config.json", config)
    (out / "table.md").write_text(table + extra_md)
    create_table_artifact(key="parser-miou", table=[
        {"model": name, "mIoU": round(100 * s["mean_iou"], 2), "pixel acc": round(100 * s["pixel_accuracy"], 2),
         "mean acc": round(100 * s["mean_accuracy"], 2), "images": s.get("images")} for name, s in rows.items()],
        description="parsing scores (%)")
    create_markdown_artifact(key="parser-report", markdown=f"# Parsing report\n\n{table}\n{extra_md}\n"
                                                          f"Report folder: `{out}`\n")
    return table
