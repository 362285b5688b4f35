"""Shared fixtures.  Real data lives at ../shared/data beside the checkout (CI has it; a
user's clone does not, and the tests that need it skip with the reason)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("PARTSYNTH_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set PARTSYNTH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small demo set generated once per session."""
    from pipeline.demo import write_demo_set

    return write_demo_set(tmp_path_factory.mktemp("demo") / "demo", num_labelled=12,
                          num_keypoint_only=8, size=96, seed=3)
