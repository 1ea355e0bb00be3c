"""What RabbitMQ holds for notifycore: every queue's name, derived in one place, and declared.

A stream ``S`` is the stream queue ``<prefix>stream.S``; a job queue ``Q`` the
quorum queue ``<prefix>Q``, with ``<prefix>Q.delay.<ms>`` (one classic queue per
delay bucket) and ``<prefix>Q.dead`` (its dead letters); a key ``K`` of the
key-value store the classic queue ``<prefix>kv.K``. :class:`Names` builds them
all (a cluster layout, issue 16, changes it alone); :class:`AmqpNames`
declares each once per process, on a channel of its own.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import amqp
import amqp.exceptions

from notify_amqp.connection import AmqpConnections, Link, recovering, refusal
from notifycore.errors import ConfigurationError

__all__ = ["AmqpNames", "Names"]

logger = logging.getLogger("notify_amqp")

#: The class and method of queue.declare: RabbitMQ's answer to a declaration.
_QUEUE_DECLARE = (50, 10)


class Names:
    """The name of every queue and stream notifycore declares under ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _name(self, kind: str, name: str) -> str:
        full = f"{self.prefix}{kind}{name}"
        # AMQP allows 255 bytes; leave room for ".dead" and ".delay.<ms>".
        if len(full.encode()) > 230:
            digest = hashlib.sha256(name.encode()).hexdigest()[:32]
            full = f"{self.prefix}{kind}{name.encode()[:150].decode(errors='ignore')}~{digest}"
        return full

    def stream(self, stream: str) -> str:
        return self._name("stream.", stream)

    def queue(self, queue: str) -> str:
        return self._name("", queue)

    def dead(self, queue: str) -> str:
        return self.queue(queue) + ".dead"

    def delay(self, queue: str, bucket: int) -> str:
        return f"{self.queue(queue)}.delay.{bucket}"

    def key(self, key: str) -> str:
        return self._name("kv.", key)


class AmqpNames(AmqpConnections):
    """Declarations of :class:`~notify_amqp.backend.AmqpBackend`: each returns the name."""

    names: Names
    stream_max_bytes: int
    stream_segment_bytes: int
    stream_max_age: float

    def _declare(self, link: Link, name: str, arguments: dict[str, Any]) -> str:
        """Declare once per process, on the link's probe channel: a refusal closes only it."""
        if name in self._declared:
            return name
        stream = arguments.get("x-queue-type") == "stream"
        try:
            link.probe_channel().queue_declare(
                name, durable=True, auto_delete=False, arguments=arguments
            )
        except amqp.exceptions.AMQPError as exc:
            link.probe = None
            if getattr(exc, "method_sig", None) != _QUEUE_DECLARE or recovering(exc):
                # Not RabbitMQ's answer to this declaration (a channel it closed on its own,
                # a lost connection), or a queue a restarted node has not recovered yet: a
                # passing state that ``_run`` waits out, never a configuration error.
                raise
            self._refused(name, stream, exc)
        with self._lock:
            self._declared.add(name)
        return name

    def _refused(self, name: str, stream: bool, exc: amqp.exceptions.AMQPError) -> None:
        """RabbitMQ refused to declare ``name``: keep an existing stream, or say what is wrong."""
        if refusal(exc) is not None:  # the user may not: AMQP_URL's user lacks a permission
            raise self._access_refused(exc) from exc
        if isinstance(exc, amqp.exceptions.PreconditionFailed):
            if stream and "x-queue-type" not in str(exc):
                # An existing stream declared with other retention: keep it (a policy
                # changes retention of existing streams), but say so.
                logger.warning("stream %s exists with other arguments (%s); using it", name, exc)
                return
            raise ConfigurationError(
                f"RabbitMQ refused to declare {name!r} as notifycore needs it: {exc}"
            ) from exc
        if not stream or isinstance(exc, amqp.exceptions.RecoverableConnectionError):
            raise exc
        # What a server without streams answers (541 "the corresponding feature flag is
        # disabled", which also closes the connection).
        raise ConfigurationError(
            f"RabbitMQ at {self.safe_url} cannot create the stream queue {name!r} "
            f"({exc}): notifycore keeps event history in RabbitMQ streams "
            "(3.9 or newer, feature flag stream_queue enabled)"
        ) from exc

    def _stream(self, link: Link, stream: str) -> str:
        name = self.names.stream(stream)
        if name in self._declared:  # the common case, and a publish's hot path: no arguments
            return name
        arguments: dict[str, Any] = {
            "x-queue-type": "stream",
            "x-max-length-bytes": self.stream_max_bytes,
            "x-stream-max-segment-size-bytes": self.stream_segment_bytes,
        }
        if self.stream_max_age:
            arguments["x-max-age"] = f"{max(int(self.stream_max_age), 1)}s"
        return self._declare(link, name, arguments)

    def _queue(self, link: Link, queue: str) -> str:
        return self._declare(link, self.names.queue(queue), {"x-queue-type": "quorum"})

    def _dead_queue(self, link: Link, queue: str) -> str:
        return self._declare(link, self.names.dead(queue), {"x-queue-type": "classic"})

    def _delay_queue(self, link: Link, queue: str, bucket: int) -> str:
        target = self._queue(link, queue)
        return self._declare(
            link,
            self.names.delay(queue, bucket),
            {
                "x-queue-type": "classic",
                "x-message-ttl": bucket,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": target,
            },
        )
