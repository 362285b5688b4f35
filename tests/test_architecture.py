"""The layering and the absence of import loops, as import-linter contracts (pyproject.toml)."""
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 kept, 0 broken" in out


def test_the_ignore_label_is_defined_once():
    import re

    hits = [p for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts
            and re.search(r"^IGNORE\s*=", p.read_text(), re.M)]
    assert [p.relative_to(ROOT).as_posix() for p in hits] == ["pipeline/labels.py"]
