"""experiments/merge_payoff.py: payoff JSONs of one table made in several runs, joined per row."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "merge_payoff.py"
spec = importlib.util.spec_from_file_location("merge_payoff", SCRIPT)
merge_payoff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(merge_payoff)


def payoff_doc(*rows):
    """A payoff.py JSON with ``rows`` given as (name, seeds, mious, iou of class 'hair' per row)."""
    return {"rows": [{"row": name, "seeds": list(seeds), "miou": list(mious), "miou_mean": sum(mious) / len(mious),
                      "iou_mean": {"hair": hair, "dress": None}, "train_seconds": [60.0] * len(seeds)}
                     for name, seeds, mious, hair in rows]}


def test_seeds_of_one_row_are_joined_and_means_recomputed():
    a = payoff_doc(("100_real", [0], [0.50], 0.40), ("100_viton", [0], [0.48], 0.30))
    b = payoff_doc(("100_real", [0, 1, 2], [0.50, 0.52, 0.54], 0.46), ("100_viton", [1], [0.46], 0.36))
    merged = merge_payoff.merge_rows([("a.json", a), ("b.json", b)])
    assert merged["100_real"]["seeds"] == [0, 1, 2]                 # seed 0 counted once
    assert merged["100_real"]["miou_mean"] == pytest.approx(0.52)
    assert merged["100_real"]["from"] == {"0": "a.json", "1": "b.json", "2": "b.json"}
    assert merged["100_viton"]["miou"] == [0.48, 0.46]
    assert merged["100_viton"]["miou_mean"] == pytest.approx(0.47)
    assert merged["100_viton"]["iou_mean"]["hair"] == pytest.approx(0.33)
    assert merged["100_viton"]["iou_mean"]["dress"] is None          # no input scored it
    # b's 3-seed row weighs its per-class mean by its seeds 1 and 2 (seed 0 came from a)
    assert merged["100_real"]["iou_mean"]["hair"] == pytest.approx((0.40 + 0.46 + 0.46) / 3)


def test_one_seed_with_two_different_scores_is_an_error_naming_both_files():
    a = payoff_doc(("100_real", [0], [0.50], 0.40))
    b = payoff_doc(("100_real", [0], [0.51], 0.40))
    with pytest.raises(ValueError, match=r"seed 0.*a\.json.*b\.json"):
        merge_payoff.merge_rows([("a.json", a), ("b.json", b)])


def test_command_writes_the_named_rows_in_order_and_refuses_a_missing_row(tmp_path, monkeypatch):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(payoff_doc(("x", [0], [0.5], 0.4), ("y", [0], [0.6], 0.4))))
    b.write_text(json.dumps(payoff_doc(("y", [1], [0.7], 0.4))))
    out = tmp_path / "out.json"
    monkeypatch.setattr("sys.argv", ["merge_payoff", str(a), str(b), "--rows", "y", "x", "--out", str(out)])
    merge_payoff.main()
    rows = json.loads(out.read_text())["rows"]
    assert [r["row"] for r in rows] == ["y", "x"] and rows[0]["seeds"] == [0, 1]
    monkeypatch.setattr("sys.argv", ["merge_payoff", str(a), "--rows", "z", "--out", str(out)])
    with pytest.raises(SystemExit, match="z"):
        merge_payoff.main()
