"""Copying a plugin template as its README asks: renamed, then installed offline.

Shared by tests/test_plugin_template.py (plugins/_template) and
tests/test_backend_template.py (plugins/_template_backend).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP_PARTS = {"__pycache__", "build", ".pytest_cache"}


def rename(text: str) -> str:
    """The renaming the template's README asks for, with "copied" as the new name."""
    return (
        text.replace("template", "copied")
        .replace("Template", "Copied")
        .replace("TEMPLATE", "COPIED")
    )


def copy_renamed(template: Path, dest: Path) -> None:
    for path in sorted(template.rglob("*")):
        relative = path.relative_to(template)
        if SKIP_PARTS & set(relative.parts) or relative.parts[0].endswith(".egg-info"):
            continue
        target = dest / rename(str(relative))
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rename(path.read_text()))


def install_renamed(template: Path, work: Path) -> tuple[Path, Path]:
    """The renamed copy of ``template`` (in ``work``) and the directory it is installed
    into, without any package index."""
    source, site = work / "notify-copied", work / "site"
    copy_renamed(template, source)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-build-isolation",
            "--no-deps",
            "--no-cache-dir",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return source, site


def environment(site: Path) -> dict[str, str]:
    """The caller's environment without NOTIFYCORE_* settings, importing from ``site``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")}
    env["PYTHONPATH"] = str(site)
    return env
