"""The ``inspect-dataset`` flow: statistics of a synthesized dataset and its static HTML page."""
from __future__ import annotations

import pickle
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from flows.synthesis import bank_for
from pipeline.errors import DataError
from pipeline.labels import LABEL_SETS
from pipeline.pictures.inspect_page import bank_prior_fn, dataset_stats, write_inspect_page
from pipeline.formats.synth_dataset import read_synth_info
from refine_net.checkpoint import load_checkpoint
from refine_net.config import SynthConfig


@task
def stats_task(dataset: str) -> dict:
    """:func:`pipeline.pictures.inspect_page.dataset_stats` of the folder."""
    return dataset_stats(dataset)


@task
def page_task(dataset: str, out: str, bank_path: str | None, max_people: int) -> str:
    """Write the HTML page (priors recomputed from the pickled bank when given)."""
    prior_fn = None
    if bank_path:
        with open(bank_path, "rb") as f:
            bank = pickle.load(f)
        prior_fn = bank_prior_fn(bank, LABEL_SETS[bank.label_set].palette)
    return str(write_inspect_page(dataset, out, prior_fn, max_people=max_people))


def synthesis_bank(dataset: str) -> str | None:
    """The prior bank a synthesized dataset was made with, when its refiner checkpoint and
    bank data are still reachable (else None)."""
    info = read_synth_info(dataset)
    if not info.refiner_checkpoint:                      # the partition labeller: no prior bank
        return None
    values = dict(info.synth_config, out=dataset, checkpoint=info.refiner_checkpoint)
    try:
        cfg = SynthConfig.model_validate(values)
        return bank_for(cfg, load_checkpoint(cfg.checkpoint, kind="refiner"))
    except (DataError, ValueError, OSError):
        return None


@flow(name="inspect-dataset", log_prints=True)
def inspect_dataset(dataset: str, out: str | None = None, priors: bool = True, max_people: int = 200) -> dict:
    """Statistics (class pixel shares, people per source, confidence distribution, lowest-
    confidence people) and ``out/index.html`` (default ``DATASET/inspect/``).  Priors are
    shown when the refiner checkpoint and bank named in ``dataset.json`` are reachable."""
    log = get_run_logger()
    stats = stats_task(dataset)
    bank_path = synthesis_bank(dataset) if priors else None
    if priors and bank_path is None:
        log.warning("priors not shown: the refiner checkpoint or its bank data is not reachable")
    page = page_task(dataset, out or str(Path(dataset) / "inspect"), bank_path, max_people)
    q = stats["confidence_quantiles"]
    create_markdown_artifact(key="dataset-inspection", markdown=(
        f"# {dataset}\n\n{stats['people']} people; sources {stats['people_per_source']}; "
        f"confidence median {q.get('q50', float('nan')):.3f} (5% {q.get('q5', float('nan')):.3f}).\n\n"
        f"Page: `{page}`\n"))
    return dict(stats, page=page)
