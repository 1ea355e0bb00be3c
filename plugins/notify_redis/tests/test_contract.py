from __future__ import annotations

from typing import Any

import pytest
from redis_helpers import RedisContract


class TestRedisBackendContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: Any) -> None:
        self.url = redis_server.url
