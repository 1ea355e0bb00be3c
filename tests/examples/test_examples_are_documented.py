"""Every example has a README, a test and a row in docs/examples.md, which quotes it faithfully."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(
    p.name
    for p in (ROOT / "examples").iterdir()
    if p.is_dir() and p.name not in ("demo", "__pycache__")
)
DOC = (ROOT / "docs" / "examples.md").read_text()


def test_the_five_examples_are_there() -> None:
    assert EXAMPLES == [
        "correspondence",
        "flask_notifications_walkthrough",
        "kinto_async_queue",
        "kinto_email_listener",
        "taskworker_topologies",
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_has_a_readme_a_test_and_a_row_in_the_docs(name: str) -> None:
    folder = ROOT / "examples" / name
    assert (folder / "README.md").read_text().startswith("# ")
    assert (folder / "__main__.py").exists(), f"python -m examples.{name} must run it"
    assert (ROOT / "tests" / "examples" / f"test_{name}.py").exists()
    assert f"| `examples/{name}/` |" in DOC
    assert f"python -m examples.{name}" in DOC


def test_the_ini_lines_the_docs_quote_are_in_the_shipped_file() -> None:
    block = DOC.split("```ini\n", 1)[1].split("```", 1)[0]
    shipped = (ROOT / "examples" / "kinto_email_listener" / "notifycore.ini").read_text()
    for line in block.splitlines():
        assert re.search(rf"^{re.escape(line)}$", shipped, re.MULTILINE), line
