"""plugins/_template_backend: a backend of seven primitives passes the whole contract suite.

The template is copied, renamed, installed offline and its own tests run on the
copy, as tests/test_plugin_template.py does for the consumer template.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.templates import ROOT, environment, install_renamed

TEMPLATE = ROOT / "plugins" / "_template_backend"
PRIMITIVES = {"publish", "read", "last_id", "enqueue", "reserve", "ack", "browse"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The renamed copy and the directory it is installed into, without any package index."""
    return install_renamed(TEMPLATE, tmp_path_factory.mktemp("backend-template"))


def test_the_backend_is_under_300_lines_and_defines_only_the_primitives() -> None:
    module = TEMPLATE / "notify_template_backend" / "backend.py"
    source = module.read_text()
    assert len(source.splitlines()) < 300
    (backend,) = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "TemplateBackend"
    ]
    methods = {
        node.name
        for node in backend.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert {name for name in methods if not name.startswith("_")} == PRIMITIVES


def test_the_copy_is_renamed_everywhere(installed: tuple[Path, Path]) -> None:
    source, _ = installed
    assert (source / "notify_copied_backend" / "backend.py").is_file()
    for path in source.rglob("*"):
        if path.is_file() and "egg-info" not in str(path) and "build" not in path.parts:
            assert "template" not in path.read_text().lower(), path


def test_the_installed_copy_passes_the_whole_contract_suite(installed: tuple[Path, Path]) -> None:
    source, site = installed
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        env=environment(site),
        cwd=site.parent,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    # Every contract test ran (none skipped), plus the template's own three.
    from notifycore.testing.contract import BackendContract

    contract_tests = [name for name in dir(BackendContract) if name.startswith("test_")]
    assert int(passed.group(1)) == len(contract_tests) + 3, summary
    assert not re.search(r"skipped|failed|error|xfail", summary), summary
