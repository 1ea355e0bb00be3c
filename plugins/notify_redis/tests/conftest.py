"""A private redis-server on 127.0.0.1 for the tests; the run fails if it cannot start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notify_redis.testing import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"), persistent=True)
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()
