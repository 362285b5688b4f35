"""Run reports: ``reports/<run>/`` on disk and the matching Prefect artifacts."""
from __future__ import annotations

import re
import time
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipeline.formats.files import write_json
from parser_net.evaluate import scores_markdown


def report_dir(root: str | Path) -> Path:
    """``root/<flow run name>`` (a timestamp outside a flow run), created."""
    from prefect.runtime import flow_run

    name = flow_run.name or time.strftime("run-%Y%m%d-%H%M%S")
    out = Path(root) / re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    out.mkdir(parents=True, exist_ok=True)
    return out


#: where the measured reasons are
WHERE = "docs/results.md, 'Making synthetic labels pay off'"

#: what several seeds measured, for verdicts a single run cannot settle
MEASURED = ("Measured on CCP with 601 real labels: parsers trained from scratch gain +0.8 over 3 seeds at 3,000 "
            "steps (every seed positive) and +0.2 at 6,000, +3.3 with 100 real labels; ImageNet-pretrained "
            "(EfficientNet-Lite0) parsers gain +0.1 over 3 seeds at 1,500 steps with the pretrained refiner's labels "
            "(two seeds of three positive), +3.2 with 100 real labels and +8.0 with 25 (3 seeds, every seed positive) "
            f"({WHERE} and 'ImageNet-pretrained encoders').")

#: refiner mIoU differences below this are called noise
NOISE_MIOU = 0.005
#: differences of two single parser runs below this are called seed noise: one CCP parser
#: row's seeds differ by up to 1.06 mIoU (encoder-decoder, 601 real + synthetic, 3 seeds) and
#: 0.83 (DeepLab, 601 real), docs/results.md
PAYOFF_NOISE_MIOU = 0.01


def payoff_verdict(rows: dict[str, dict], baseline: str = "labelled only",
                   mixed: str = "labelled + synthetic") -> str:
    """One line saying whether the synthetic people helped: the mIoU difference of the
    ``mixed`` row over the ``baseline`` row (scores as :meth:`ParsingScores.as_dict`),
    called seed noise below :data:`PAYOFF_NOISE_MIOU` and at its edge below twice that
    (both with the 3-seed numbers, :data:`MEASURED`), and where the measured reasons are."""
    delta = 100 * (rows[mixed]["mean_iou"] - rows[baseline]["mean_iou"])
    if delta >= 200 * PAYOFF_NOISE_MIOU:
        return f"Synthetic people help: {delta:+.1f} mIoU over {baseline} at the same compute."
    if delta >= 100 * PAYOFF_NOISE_MIOU:
        return (f"Synthetic people help: {delta:+.1f} mIoU over {baseline} at the same compute, one run at the edge "
                f"of seed noise (one configuration's seeds differ by up to 1.0).  {MEASURED}")
    if delta > -100 * PAYOFF_NOISE_MIOU:
        return (f"Synthetic people: {delta:+.1f} mIoU at the same compute, within one run's seed noise (one "
                f"configuration's seeds differ by up to 1.0).  {MEASURED}")
    return (f"Synthetic people do not help here ({delta:+.1f} mIoU at the same compute): they take half of the "
            "real batches and teach errors of their own; compare the synthetic sets one by one "
            f"(experiments/payoff.py) and see {WHERE}.")


def synthesis_score_line(scores: dict) -> str:
    """One line: how good the synthetic labels are, from
    :func:`pipeline.synth_score.score_synthesis` scores of the val people."""
    return (f"Synthetic labels of the {scores['images']} val images, made as if their people had keypoints only: "
            f"{100 * scores['mean_iou']:.1f} mIoU, person silhouette IoU {100 * scores['silhouette_iou']:.1f} "
            "against their ground truth.")


def labelled_people_line(counts: dict[str, dict], labeller: str) -> str:
    """One line: how many keypoint-only people each synthesized set labelled and skipped
    (``counts``: {set: {"people_labelled", "people_skipped"}}), and by what."""
    by = "the partition labeller (each person's own mask cut by its skeleton)" if labeller == "partition" \
        else "the refiner"
    sets = "; ".join(f"{name} {c['people_labelled']:,} labelled, {c['people_skipped']:,} skipped"
                     for name, c in counts.items())
    return f"Keypoint-only people labelled by {by}: {sets}." if counts else ""


def refiner_line(summary: dict) -> str:
    """One line: the refiner's val mIoU on crops against the prior it refines (from
    :func:`refine_net.train.training_summary`), with a warning when the refiner makes its
    prior worse by more than :data:`NOISE_MIOU` (too few epochs when it was still
    improving).  Empty without val scores."""
    refined, prior = summary.get("val_miou"), summary.get("prior_val_miou")
    if refined is None or prior is None:
        return ""
    epochs = summary["epochs"]
    line = (f"Refiner after {epochs} epoch{'s' if epochs != 1 else ''}: {100 * refined:.1f} mIoU on the val crops; "
            f"the prior it refines: {100 * prior:.1f}.")
    if refined < prior - NOISE_MIOU:
        line += " Its labels are worse than the morphed masks it starts from"
        line += (": it was still improving, train it longer (--refiner-epochs)." if summary.get("still_improving")
                 else "; it had stopped improving (compare both: partsynth evaluate-refiner).")
    return line


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
