"""The RabbitMQ backend, through kombu: stream queues for history, quorum queues for jobs.

Assembled kombu-style from one module per role:
:mod:`~notify_amqp.connection` (a connection per thread, its QoS and lease
bookkeeping, the keeper thread), :mod:`~notify_amqp.names` (every queue's
name, and declarations), :mod:`~notify_amqp.streams`,
:mod:`~notify_amqp.queues` (with :mod:`~notify_amqp.jobs`, what a job's
message carries), :mod:`~notify_amqp.delays` (delay buckets),
:mod:`~notify_amqp.dead_letters` and :mod:`~notify_amqp.keyvalue` (claims,
the optional capability de-duplication needs).
"""

from __future__ import annotations

from typing import Any, Self

from notify_amqp.connection import CONNECTION_ERRORS
from notify_amqp.dead_letters import AmqpDeadLetters
from notify_amqp.delays import DELAY_BUCKETS
from notify_amqp.keyvalue import AmqpClaims
from notify_amqp.names import Names
from notify_amqp.plugin import DEFAULT_URL
from notify_amqp.streams import AmqpStreams
from notifycore.backends.base import Backend

__all__ = ["DELAY_BUCKETS", "AmqpBackend"]


class AmqpBackend(AmqpStreams, AmqpDeadLetters, AmqpClaims, Backend):
    """Streams and queues in RabbitMQ, shared by every process and machine that uses it."""

    name = "amqp"
    shared = True
    connection_errors = CONNECTION_ERRORS

    def __init__(
        self,
        url: str | None = None,
        *,
        stream_maxlen: int = 10_000,
        stream_max_age: float = 0.0,
        stream_max_bytes: int = 100_000_000,
        stream_segment_bytes: int = 8_000_000,
        prefix: str = "notifycore.",
        prefetch: int = 0,
        retries: int = 3,
        read_quiet: float = 0.05,
        heartbeat: int = 20,
        recovery_wait: float = 30.0,
    ) -> None:
        super().__init__(
            url or DEFAULT_URL, stream_maxlen=stream_maxlen, stream_max_age=stream_max_age
        )
        assert self.url is not None
        self._init_connections(
            self.url, retries=retries, heartbeat=heartbeat, recovery_wait=recovery_wait
        )
        self.stream_max_bytes = stream_max_bytes
        self.stream_segment_bytes = stream_segment_bytes
        self.prefix = prefix
        self.names = Names(prefix)
        self.prefetch = prefetch
        self.read_quiet = read_quiet

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        return cls(
            cls._url_setting(
                settings, "AMQP_URL", DEFAULT_URL, ("amqp://", "amqps://", "pyamqp://")
            ),
            **cls._stream_settings(settings),
            stream_max_bytes=settings.get("AMQP_STREAM_MAX_BYTES", 100_000_000),
            stream_segment_bytes=settings.get("AMQP_STREAM_SEGMENT_BYTES", 8_000_000),
            prefix=settings.get("AMQP_PREFIX", "notifycore."),
            prefetch=settings.get("AMQP_PREFETCH", 0),
            retries=settings.get("AMQP_RETRIES", 3),
            read_quiet=settings.get("AMQP_READ_QUIET", 0.05),
            heartbeat=settings.get("AMQP_HEARTBEAT", 20),
            recovery_wait=settings.get("AMQP_RECOVERY_WAIT", 30.0),
        )

    def __repr__(self) -> str:
        return f"<AmqpBackend {self.safe_url}>"

    def close(self) -> None:
        self._close_links()
        if self._async_thread is not None:
            self._async_thread.shutdown(wait=False)
