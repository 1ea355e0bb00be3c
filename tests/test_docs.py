"""The documentation keeps up with the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from notifycore import hookspecs
from notifycore.builtin import CORE_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("notifycore_"))


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_section(hook: str) -> None:
    headings = re.findall(r"^## (\S+)$", (DOCS / "hooks.md").read_text(), re.MULTILINE)
    assert hook in headings, f"docs/hooks.md has no '## {hook}' section"


def test_no_section_for_a_hook_that_does_not_exist() -> None:
    headings = re.findall(r"^## (\S+)$", (DOCS / "hooks.md").read_text(), re.MULTILINE)
    assert sorted(headings) == hook_names()


@pytest.mark.parametrize("setting", [s.name for s in CORE_SETTINGS])
def test_every_core_setting_is_documented(setting: str) -> None:
    assert f"| `{setting}` |" in (DOCS / "configuration.md").read_text()


def test_every_command_is_documented() -> None:
    from notifycore.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = (DOCS / "cli.md").read_text()
    for name in commands:
        assert f"notifycore {name}" in text, f"docs/cli.md does not show 'notifycore {name}'"


def test_readme_quick_start_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "got This event will pass the filter" in done.stdout
    assert "('app.write_to_file', <Status.RAN: 'ran'>)" in done.stdout
    assert '"event_type":"test"' in (tmp_path / "events.log").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```sh\n{ci_command}\n```" in (ROOT / "README.md").read_text()


def test_console_demo_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "console_demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "queued consumer (in the worker) mailed: 'Build finished'" in done.stdout
    assert "user:alice: ['Build finished']" in done.stdout
