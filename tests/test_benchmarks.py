"""The benchmarks build their networks and checkpoints through the current APIs (a change of
``build_network`` once left two of them broken until someone ran them)."""
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT))
    yield lambda name: importlib.import_module(f"benchmarks.{name}")
    sys.path.remove(str(ROOT))


def test_memory_format_bench_trains_both_kinds(bench):
    b = bench("bench_memory_format")
    assert b.steps_per_second("parser", "NCHW", 1) > 0
    assert b.steps_per_second("joint", "channels-last both", 1) > 0


def test_predict_bench_checkpoint_parses_a_photo(bench, demo_dir, tmp_path):
    from parser_net.predict import Predictor
    from pipeline.formats import files

    ckpt = bench("bench_predict").untrained_parser(tmp_path / "parser.pt", "cpu", 96)
    label_map, probs, keypoints = Predictor(ckpt).predict(files.read_image(sorted((demo_dir / "images").iterdir())[0]))
    assert label_map.shape == probs.shape[1:] and keypoints is None


@pytest.mark.parametrize("row", ["ssnan", "pose pil", "htcorrm hnl"])
def test_family_bench_steps_each_kind_of_network(bench, row):
    b = bench("bench_family")
    cost = b.step_cost(row, b.ROWS[row], "cpu", "cpu", 1)
    assert cost["seconds_per_step"] > 0
