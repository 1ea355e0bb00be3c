"""Shared fixtures: a Notifications factory that ignores the developer's environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifycore import Notifications


@pytest.fixture
def make_notifications() -> Iterator[Callable[..., Notifications]]:
    made: list[Notifications] = []

    def make(**config: Any) -> Notifications:
        config.setdefault("BACKEND", "memory")
        instance = Notifications(config=config, environ={})
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.close()
