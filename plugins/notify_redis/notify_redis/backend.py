"""The Redis backend: Redis Streams for history, live delivery and job queues.

Assembled kombu-style from one module per role: :mod:`~notify_redis.connection`
(clients, errors, the async loop thread), :mod:`~notify_redis.keys` (every
key, derived in one place), :mod:`~notify_redis.scripts` (the Lua),
:mod:`~notify_redis.streams`, :mod:`~notify_redis.queues` and
:mod:`~notify_redis.keyvalue` (the optional key-value store and counters) and
:mod:`~notify_redis.inbox` (the optional inboxes).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, Self

from notify_redis.connection import CONNECTION_ERRORS, SCHEMES, RedisConnection
from notify_redis.inbox import RedisInboxes
from notify_redis.keys import KeySpace
from notify_redis.keyvalue import RedisKeyValue
from notify_redis.plugin import DEFAULT_URL
from notify_redis.queues import RedisQueues
from notify_redis.streams import RedisStreams, parse_id
from notifycore.backends.base import Backend

__all__ = ["RedisBackend", "parse_id"]


class RedisBackend(RedisStreams, RedisQueues, RedisKeyValue, RedisInboxes, Backend):
    """Streams and queues in Redis, shared by every process and machine that uses it."""

    name = "redis"
    shared = True
    connection_errors = CONNECTION_ERRORS

    def __init__(
        self,
        url: str | None = None,
        *,
        stream_maxlen: int = 10_000,
        stream_max_age: float = 0.0,
        prefix: str = "notifycore:",
        retries: int = 3,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        super().__init__(
            url or DEFAULT_URL, stream_maxlen=stream_maxlen, stream_max_age=stream_max_age
        )
        assert self.url is not None
        self.prefix = prefix
        self.retries = retries
        self.connection = RedisConnection(
            self.url, retries=retries, wait_replicas=wait_replicas, wait_timeout=wait_timeout
        )
        self.safe_url = self.connection.safe_url
        self.keys = KeySpace(prefix)
        #: This backend's name as a consumer of queues and as a publisher.
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.connection.consumer = self.consumer
        self._groups: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        return cls(
            cls._url_setting(settings, "REDIS_URL", DEFAULT_URL, SCHEMES),
            **cls._stream_settings(settings),
            prefix=settings.get("REDIS_PREFIX", "notifycore:"),
            retries=settings.get("REDIS_RETRIES", 3),
            wait_replicas=settings.get("REDIS_WAIT_REPLICAS", 0),
            wait_timeout=settings.get("REDIS_WAIT_TIMEOUT", 1.0),
        )

    @property
    def client(self) -> Any:
        """The redis-py client (sync)."""
        return self.connection.client

    def __repr__(self) -> str:
        return f"<RedisBackend {self.safe_url}>"

    def close(self) -> None:
        self.connection.close()
