"""A private rabbitmq-server on 127.0.0.1 for the tests; the run fails if it cannot start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from notify_amqp.testing import RabbitServer
from notifycore import hookimpl
from notifycore.plugins import get_plugins


@pytest.fixture(scope="session")
def rabbit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    try:
        server = RabbitServer(tmp_path_factory.mktemp("rabbitmq"))
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.shutdown()


@pytest.fixture
def states() -> Iterator[list[str]]:
    """The backend states reported (``notifycore_backend_state``) while the test runs."""
    seen: list[str] = []

    class StateSpy:
        @hookimpl
        def notifycore_backend_state(self, backend: Any, state: str, error: Any) -> None:
            seen.append(state)

    get_plugins().register(StateSpy(), name="amqp-state-spy")
    try:
        yield seen
    finally:
        get_plugins().unregister(name="amqp-state-spy")
