"""plugins/_template works as a starting point: copied, renamed, installed offline, loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.templates import ROOT, environment, install_renamed

TEMPLATE = ROOT / "plugins" / "_template"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The renamed copy and the directory it is installed into, without any package index."""
    return install_renamed(TEMPLATE, tmp_path_factory.mktemp("template"))


def test_the_copy_is_renamed_everywhere(installed: tuple[Path, Path]) -> None:
    source, _ = installed
    assert (source / "notify_copied" / "plugin.py").is_file()
    for path in source.rglob("*"):
        if path.is_file() and "egg-info" not in str(path) and "build" not in path.parts:
            assert "template" not in path.read_text().lower(), path


def test_notifycore_loads_the_installed_copy(installed: tuple[Path, Path]) -> None:
    _, site = installed
    script = """
import notify_copied
from notifycore import ConfigurationError, Event, Notifications
from notifycore.drivers import CONSUMERS, resolve
from notifycore.plugins import get_plugins

print("module", notify_copied.__file__)
info = {i.name: i for i in get_plugins().list_plugins()}["copied"]
print("plugin", info.distribution, info.version, ",".join(info.hooks))
notifications = Notifications(config={"BACKEND": "memory", "COPIED_PREFIX": "~ "})
consumer = resolve(CONSUMERS, "copied").from_settings(notifications.settings)
notifications.create_hub("Builds").register_consumer(consumer)
result = notifications.send(Event(None, "build", "Build finished", ""))
print("outcomes", [(o.consumer, o.status.value) for o in result.outcomes])
try:
    Notifications(config={"BACKEND": "memory", "COPIED_MAX_LINES": "many"})
except ConfigurationError as error:
    print("error", error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(site),
        cwd=site.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"module {site / 'notify_copied' / '__init__.py'}"
    assert lines[1] == "plugin notify-copied 0.1.0 notifycore_register_settings"
    assert lines[2] == "~ build: Build finished"
    assert lines[3] == "outcomes [('copied', 'ran')]"
    assert lines[4].startswith("error COPIED_MAX_LINES (from configuration) must be int")


def test_the_templates_own_tests_pass_on_the_copy(installed: tuple[Path, Path]) -> None:
    source, site = installed
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(site),
        cwd=site.parent,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout


NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))

COPIED_CONFIG = """
[notifycore]
backend = memory
copied_prefix = ~>
copied_max_lines = 5
hubs = Builds
hubs.Builds.listeners = by_name by_path ini_keys
listeners.by_name.use = copied
listeners.by_path.use = notify_copied.consumer:CopiedConsumer
listeners.ini_keys.use = copied
listeners.ini_keys.prefix = !>
listeners.ini_keys.max_lines = 3
"""


def test_a_copied_consumer_picked_by_name_in_a_config_file_reads_its_settings(
    installed: tuple[Path, Path],
) -> None:
    """Issue 13: `use = "copied"` with COPIED_PREFIX set used to build a consumer without it."""
    _, site = installed
    config = site.parent / "app.ini"
    config.write_text(COPIED_CONFIG)
    env = environment(site)
    check = subprocess.run(
        [NOTIFYCORE, "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    consumers = [
        line.split("consumer: ")[1] for line in check.stdout.splitlines() if "consumer: " in line
    ]
    # Settings reach it by entry-point name and by path; a listener's own keys win (INI text
    # converted to the constructor's int).
    assert consumers == [
        "CopiedConsumer(prefix='~>', max_lines=5)",
        "CopiedConsumer(prefix='~>', max_lines=5)",
        "CopiedConsumer(prefix='!>', max_lines=3)",
    ]
    sent = subprocess.run(
        [NOTIFYCORE, "send", "--config", str(config), "--type", "build", "--title", "Done"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[:3] == ["~>build: Done", "~>build: Done", "!>build: Done"]
