"""The plugin, installed: found through its entry points, its setting and consumer at work."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from notify_template import TemplateConsumer
from notifycore import ConfigurationError, Event, Notifications
from notifycore.drivers import CONSUMERS, resolve
from notifycore.plugins import get_plugins


def test_the_plugin_is_registered_through_its_entry_point() -> None:
    names = [info.name for info in get_plugins().list_plugins()]
    assert "template" in names


def test_the_consumer_is_a_named_driver() -> None:
    assert resolve(CONSUMERS, "template") is TemplateConsumer


def test_the_setting_is_declared_with_its_default() -> None:
    notifications = Notifications(config={"BACKEND": "memory"})
    assert notifications.settings["TEMPLATE_PREFIX"] == "[template] "
    notifications.close()


def test_a_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match="TEMPLATE_MAX_LINES"):
        Notifications(config={"BACKEND": "memory", "TEMPLATE_MAX_LINES": "many"})


def test_the_consumer_writes_a_line_per_event() -> None:
    notifications = Notifications(config={"BACKEND": "memory", "TEMPLATE_PREFIX": ">> "})
    out = io.StringIO()
    consumer = TemplateConsumer.from_settings(notifications.settings, out=out)
    notifications.create_hub("Builds").register_consumer(consumer)

    result = notifications.send(Event(None, "build", "Build finished", ""))

    assert [o.status.value for o in result.outcomes] == ["ran"]
    assert out.getvalue() == ">> build: Build finished\n"
    assert list(consumer.lines) == [">> build: Build finished"]
    notifications.close()


def test_a_listener_declared_by_name_or_path_reads_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "app.toml"
    config.write_text(
        """
BACKEND = "memory"
TEMPLATE_PREFIX = "[settings] "
TEMPLATE_MAX_LINES = 7

[hubs.Builds]
listeners = ["by_name", "by_path", "own_keys"]

[listeners.by_name]
use = "template"

[listeners.by_path]
use = "notify_template.consumer:TemplateConsumer"

[listeners.own_keys]
use = "template"
prefix = "[own] "
"""
    )
    notifications = Notifications(config=str(config))
    consumers = notifications.get_hub("Builds").consumers
    assert repr(consumers["by_name"]) == "TemplateConsumer(prefix='[settings] ', max_lines=7)"
    assert repr(consumers["by_path"]) == "TemplateConsumer(prefix='[settings] ', max_lines=7)"
    assert repr(consumers["own_keys"]) == "TemplateConsumer(prefix='[own] ', max_lines=7)"

    notifications.send(Event(None, "build", "Build finished", ""))

    assert capsys.readouterr().out.splitlines() == [
        "[settings] build: Build finished",
        "[settings] build: Build finished",
        "[own] build: Build finished",
    ]
    notifications.close()
