from __future__ import annotations

from typing import Any

import pytest
from redis_helpers import RedisContract

from notifycore.backends.capabilities import capabilities


class TestRedisBackendContract(RedisContract):
    @pytest.fixture(autouse=True)
    def _server(self, redis_server: Any) -> None:
        self.url = redis_server.url

    def test_every_optional_capability_is_offered(self) -> None:
        # So none of the optional contract tests above passes by finding it refused.
        backend = self.make_backend()
        try:
            assert capabilities(backend) == ["claims", "key-value store", "counters", "inboxes"]
        finally:
            backend.close()
