"""Fixtures: notifications with a pushing hub, servers stopped after each test, an HTTP client."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# The helpers module sits beside this file; --import-mode=importlib does not add it to the path.
sys.path.insert(0, str(Path(__file__).parent))

from starlette_helpers import WAIT, Serve, make_notifications

from notifycore import Notifications


@pytest.fixture
def serve() -> Iterator[Serve]:
    serving = Serve()
    try:
        yield serving
    finally:
        for server in serving.servers:
            if server.thread.is_alive():
                server.stop()


@pytest.fixture
def notes() -> Iterator[Notifications]:
    notifications = make_notifications()
    try:
        yield notifications
    finally:
        notifications.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(WAIT)) as c:
        yield c


@pytest.fixture
def no_sync_hooks(notes: Notifications) -> Iterator[bool]:
    """Without the test plugin installed beside the suite, whose sync ``after_send`` hook
    (run on every send) keeps ``POST /events`` in a worker thread; True if it was there."""
    plugins = notes.plugins
    tiny = plugins.pm.get_plugin("tiny")
    if tiny is not None:
        plugins.unregister(name="tiny")
    try:
        yield tiny is not None
    finally:
        if tiny is not None:
            plugins.register(tiny, name="tiny")
