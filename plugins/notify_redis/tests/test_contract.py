from __future__ import annotations

import uuid
from typing import Any

import pytest

from notify_redis.backend import RedisBackend
from notifycore.testing.contract import BackendContract


class TestRedisBackendContract(BackendContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: Any) -> None:
        self.url = redis_server.url

    def make_backend(self, **options: Any) -> RedisBackend:
        return RedisBackend(self.url, prefix=f"test-{uuid.uuid4().hex[:8]}:", **options)
