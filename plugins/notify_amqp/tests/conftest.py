"""A private rabbitmq-server on 127.0.0.1 for the tests; the run fails if it cannot start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notify_amqp.testing import RabbitServer


@pytest.fixture(scope="session")
def rabbit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    try:
        server = RabbitServer(tmp_path_factory.mktemp("rabbitmq"))
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.shutdown()
