"""The documentation keeps up with the code."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from notifycore import Setting, hookimpl, hookspecs
from notifycore.plugins import Plugins, get_plugins
from notifycore.settings import CORE_SETTINGS, collect_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def docs_extension() -> ModuleType:
    """docs/_ext/notifycore_docs.py, the Sphinx extension that generates the settings reference."""
    spec = importlib.util.spec_from_file_location(
        "notifycore_docs", DOCS / "_ext" / "notifycore_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_the_settings_reference_lists_every_setting_of_every_repository_plugin() -> None:
    ext = docs_extension()
    wanted = ext.repository_plugins()
    warnings: list[str] = []
    text = ext.render_settings(get_plugins(), wanted, warnings.append)
    assert warnings == []
    for name in collect_settings(get_plugins()):
        if name.startswith("TINY_"):  # tests/plugin_dist, not a plugin of this repository
            assert f"`{name}`" not in text
            continue
        assert f"| `{name}` |" in text, f"the settings reference lacks {name}"
    assert "| `MAX_TRIES` | int | `5` | Deliveries of a queued job" in text
    assert "| `CONSUMER_ERRORS` | `log` or `raise` | `log` |" in text
    assert "| `MAIL_USERNAME` | str or none | none |" in text


def test_the_repository_plugins_are_the_core_and_the_plugins_folders() -> None:
    wanted = docs_extension().repository_plugins()
    assert wanted["notifycore.core_plugin"] == "notifycore"
    assert wanted["redis"] == "notify-redis"
    assert wanted["mail"] == "notify-mail"
    assert "template" not in wanted  # plugins/_template is a starting point, not a plugin


class _NewPlugin:
    @hookimpl
    def notifycore_register_settings(self, register: Callable[[Setting], None]) -> None:
        register(Setting("NEW_THING", float, 2.5, "A brand | new setting.", minimum=0.5))


def test_a_newly_registered_setting_shows_up_in_the_reference() -> None:
    plugins = Plugins()
    plugins.register(
        importlib.import_module("notifycore.core_plugin"), name="notifycore.core_plugin"
    )
    plugins.register(_NewPlugin(), name="new")
    wanted = {"notifycore.core_plugin": "notifycore", "new": "notify-new"}
    text = docs_extension().render_settings(plugins, wanted, pytest.fail)
    assert "## notify-new\n\nDeclared by the plugin `new`." in text
    assert "| `NEW_THING` | float | `2.5` | A brand \\| new setting. At least 0.5. |" in text
    assert text.index("## notifycore") < text.index("## notify-new")


def test_a_repository_plugin_that_is_not_installed_is_reported() -> None:
    plugins = Plugins()
    plugins.register(
        importlib.import_module("notifycore.core_plugin"), name="notifycore.core_plugin"
    )
    warnings: list[str] = []
    text = docs_extension().render_settings(
        plugins, {"notifycore.core_plugin": "notifycore", "amqp": "notify-amqp"}, warnings.append
    )
    assert "| `BACKEND` |" in text
    assert len(warnings) == 1
    assert "'amqp' of the distribution 'notify-amqp' is not installed" in warnings[0]


def test_the_settings_page_is_generated() -> None:
    assert docs_extension().MARKER in (DOCS / "settings.md").read_text()


def test_every_command_is_documented() -> None:
    from notifycore.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert commands is not None
    text = (DOCS / "cli.md").read_text()
    for name in commands:
        assert f"notifycore {name}" in text, f"docs/cli.md does not show 'notifycore {name}'"


def run_block(block: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a documented Python block in a fresh interpreter in ``cwd``, with no NOTIFYCORE_*
    settings of the caller's; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_readme_quick_start_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    done = run_block(block, tmp_path)
    assert "got This event will pass the filter" in done.stdout
    assert "('app.write_to_file', <Status.RAN: 'ran'>)" in done.stdout
    assert '"event_type":"test"' in (tmp_path / "events.log").read_text()


def test_docs_quick_start_runs(tmp_path: Path) -> None:
    text = (DOCS / "quickstart.md").read_text()
    block = text.split("## Send a first event", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    done = run_block(block, tmp_path)
    assert done.stdout.splitlines() == [
        "new comment: Nice photo! for ['alice']",
        "['Comments'] [('app.print_comment', 'ran'), "
        "('notifycore.consumers.LogConsumer', 'ran'), "
        "('notifycore.consumers.PushConsumer', 'ran')]",
        "[]",
        "['1']",
    ]
    assert '"title":"Nice photo!"' in (tmp_path / "comments.log").read_text()


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
