"""A private redis-server on 127.0.0.1 for the tests; the run fails if it cannot start."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# redis_helpers sits beside this file; --import-mode=importlib does not add it to the path.
sys.path.insert(0, str(Path(__file__).parent))

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
