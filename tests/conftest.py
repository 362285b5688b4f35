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


#: a refiner small enough to train on the demo set in seconds
TINY_REFINER = dict(size=64, depth=4, base_filters=8, batch_size=4, loss="ce", lr=2e-3, beta1=0.5, dropout_blocks=0,
                    threads=2)


@pytest.fixture(scope="session")
def checkpoint(demo_dir, tmp_path_factory) -> Path:
    """A tiny refiner trained for 20 epochs on the demo set (about 10 s)."""
    from refine_net.config import RefinerTrainConfig
    from refine_net.train import fit_refiner

    return fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path_factory.mktemp("run")), epochs=20,
                                   **TINY_REFINER))


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server (SQLite) for every flow test of the session, with the
    task-result and prior-bank caches in a fresh folder.  Yields the server's API URL."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["PARTSYNTH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("results")}):
        with prefect_test_harness(server_startup_timeout=60):
            yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def tiny_refiner(demo_dir, tmp_path_factory) -> Path:
    """A small refiner trained for 3 epochs on the demo set (a few seconds)."""
    from refine_net.config import RefinerTrainConfig
    from refine_net.train import fit_refiner

    return fit_refiner(RefinerTrainConfig(data=str(demo_dir), out_dir=str(tmp_path_factory.mktemp("refiner")), epochs=3,
                            size=64, base_filters=8, depth=4, batch_size=4, threads=1, loss="ce"))


#: a parser small enough to train on the demo set in a second
TINY_PARSER = dict(width=4, blocks=(1, 1, 1, 1), head_width=8, size=32, batch_size=2, threads=1, checkpoint_every=2)


def _train_tiny_parser(demo_dir, out_dir, **kw) -> Path:
    from parser_net.config import ParserTrainConfig
    from parser_net.train import load_pool, train_parser

    cfg = ParserTrainConfig(data=str(demo_dir), out_dir=str(out_dir), iterations=2, **TINY_PARSER, **kw)
    return train_parser(cfg, load_pool(cfg.data, (), cfg.label_set, 40))


@pytest.fixture(scope="session")
def tiny_parser(demo_dir, tmp_path_factory) -> Path:
    """A tiny DeepLab parser trained for 2 steps on the demo set."""
    return _train_tiny_parser(demo_dir, tmp_path_factory.mktemp("parser"))


@pytest.fixture(scope="session")
def tiny_joint(demo_dir, tmp_path_factory) -> Path:
    """A tiny joint parsing + pose network trained for 2 steps on the demo set."""
    return _train_tiny_parser(demo_dir, tmp_path_factory.mktemp("joint"), model="joint")


@pytest.fixture(scope="session")
def synth(checkpoint, demo_dir, tmp_path_factory) -> Path:
    """The demo's keypoint-only people synthesized with the session's refiner (8 images)."""
    from pipeline.readers.layouts import keypoint_only_people
    from refine_net.config import SynthConfig
    from refine_net.synthesize import Synthesizer

    out = tmp_path_factory.mktemp("synth") / "synth"
    s = Synthesizer(SynthConfig(checkpoint=str(checkpoint), data=str(demo_dir), out=str(out)))
    s.run(keypoint_only_people(demo_dir), out)
    s.finalize(out)
    return out


def viton_subset(shared_data, root, n=30):
    """The first ``n`` VITON people as an OpenPose folder of links (pose/, images/, parse/)."""
    for sub in ("pose", "images", "parse"):
        (root / sub).mkdir(parents=True)
    for f in sorted((shared_data / "viton" / "pose").glob("*_keypoints.json"))[:n]:
        stem = f.name[: -len("_keypoints.json")]
        (root / "pose" / f.name).symlink_to(f.resolve())
        (root / "images" / f"{stem}.jpg").symlink_to((shared_data / "viton" / "images" / f"{stem}.jpg").resolve())
        (root / "parse" / f"{stem}.png").symlink_to((shared_data / "viton" / "parse" / f"{stem}.png").resolve())
    return root
