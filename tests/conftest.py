"""Shared fixtures: a Notifications factory that ignores the developer's environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notifycore import Notifications


@pytest.fixture(autouse=True)
def _work_in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default backend writes notifycore.db in the working directory: keep it out of the tree."""
    monkeypatch.chdir(tmp_path)


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
