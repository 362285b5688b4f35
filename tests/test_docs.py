"""The README and the docs point only at files that exist, and the README's two commands
are the ones CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(md: Path) -> list[str]:
    targets = [t.split("#")[0] for t in LINK.findall(md.read_text(encoding="utf-8"))]
    return [t for t in targets if t and not re.match(r"^[a-z]+:", t)]


def test_every_relative_link_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert len(relative_links(ROOT / "README.md")) >= 8
    broken = [f"{md.relative_to(ROOT)} -> {t}" for md in pages for t in relative_links(md)
              if not (md.parent / t).exists()]
    assert not broken, broken


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in ln and "pip install" in ln]
    assert len(ci) == 1 and f"    {ci[0]}\n" in readme
