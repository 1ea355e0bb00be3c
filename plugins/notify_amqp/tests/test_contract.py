from __future__ import annotations

import uuid
from typing import Any

import pytest

from notify_amqp.backend import AmqpBackend
from notifycore.testing.contract import BackendContract


class TestAmqpBackendContract(BackendContract):
    @pytest.fixture(autouse=True)
    def _server(self, rabbit_server: Any) -> None:
        self.url = rabbit_server.url

    def make_backend(self, **options: Any) -> AmqpBackend:
        maxlen = options.pop("stream_maxlen", None)
        if maxlen is not None:
            # RabbitMQ streams keep bytes, not a count: a few small segments stand for
            # "a handful of messages".
            options["stream_max_bytes"] = 6000
            options["stream_segment_bytes"] = 1000
        return AmqpBackend(self.url, prefix=f"test-{uuid.uuid4().hex[:8]}.", **options)
