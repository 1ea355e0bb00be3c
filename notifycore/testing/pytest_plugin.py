"""pytest fixtures for applications and plugin authors, installed as a ``pytest11`` plugin.

- ``notifications``: a fresh :class:`~notifycore.Notifications` on the memory
  backend, with the ``raise`` error policy so consumer failures fail the test.
- ``captured_events``: the events sent during the test (see ``capture_events``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notifycore.notifications import Notifications
from notifycore.testing import CapturedEvents, capture_events


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    instance = Notifications(config={"BACKEND": "memory", "CONSUMER_ERRORS": "raise"}, environ={})
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def captured_events() -> Iterator[CapturedEvents]:
    with capture_events() as captured:
        yield captured
