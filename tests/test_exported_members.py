"""``__all__`` lists exactly the public names each public module defines."""

from __future__ import annotations

import importlib

import pytest

import notifycore

MODULES = [
    "notifycore",
    "notifycore.notifications",
    "notifycore.backends.base",
    "notifycore.backends.capabilities",
    "notifycore.backends.envelope",
    "notifycore.backends.inboxes",
    "notifycore.backends.memory",
    "notifycore.config",
    "notifycore.consumers",
    "notifycore.declarations",
    "notifycore.digest",
    "notifycore.core_plugin",
    "notifycore.delivery",
    "notifycore.drivers",
    "notifycore.errors",
    "notifycore.event",
    "notifycore.fanout",
    "notifycore.web.sse",
    "notifycore.web.access",
    "notifycore.web.calls",
    "notifycore.web.protocol",
    "notifycore.web",
    "notifycore.filters",
    "notifycore.hub",
    "notifycore.jobs",
    "notifycore.listeners",
    "notifycore.loop_thread",
    "notifycore.plugins",
    "notifycore.result",
    "notifycore.settings",
    "notifycore.testing",
    "notifycore.testing.inbox",
    "notifycore.testing.web",
    "notifycore.worker",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    for member in module.__all__:
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"


def test_top_level_exports_every_public_exception_and_class() -> None:
    from notifycore import errors

    for member in errors.__all__:
        assert member in notifycore.__all__
    assert sorted(notifycore.__all__) == sorted(set(notifycore.__all__))


def test_every_exception_is_below_the_root_and_drawn_in_the_tree() -> None:
    from notifycore import errors

    assert errors.__doc__ is not None
    for name in [*MODULES, "notifycore.cli", "notifycore.jobs"]:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("notifycore")
            ):
                assert issubclass(value, notifycore.NotifycoreError), value
                assert value.__name__ in errors.__doc__, f"{value} is not in the errors.py tree"
