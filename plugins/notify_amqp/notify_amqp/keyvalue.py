"""Claims on RabbitMQ (an optional capability): one tiny classic queue per key.

RabbitMQ has no key-value store. A key's queue (``<prefix>kv.<key>``) holds at
most one message (``x-max-length`` 1, ``x-overflow reject-publish``): the first
``kv_set_if_absent`` is confirmed, any other is refused (nacked) — atomic
across processes. The message expires with the key's ttl; the queue itself
goes away a week after its last use, which is the longest a key lives here.
RabbitMQ offers claims only: reading a value back would take the message off
the queue, and while it is held another claim would succeed, so the
key-value store and counters are not offered (use Redis or SQLite for those).
"""

from __future__ import annotations

import amqp
import amqp.exceptions

from notify_amqp.connection import Link, Nacked
from notify_amqp.names import AmqpNames
from notifycore.errors import BackendError, BackendUnavailable

__all__ = ["KEY_EXPIRES_MS", "AmqpClaims"]

#: Idle lifetime of a key's queue: the longest a key lives, whatever its ttl.
KEY_EXPIRES_MS = 7 * 24 * 3600 * 1000


class AmqpClaims(AmqpNames):
    """``kv_set_if_absent``, ``kv_exists`` and ``kv_delete`` of
    :class:`~notify_amqp.backend.AmqpBackend`."""

    def _key_queue(self, link: Link, key: str) -> str:
        return self._declare(
            link,
            self.names.key(key),
            {
                "x-queue-type": "classic",
                "x-max-length": 1,
                "x-overflow": "reject-publish",
                "x-expires": KEY_EXPIRES_MS,
            },
        )

    def kv_set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        if not isinstance(value, bytes):
            raise TypeError(f"values are bytes, not {type(value).__name__}")

        def call(link: Link) -> bool:
            name = self._key_queue(link, key)
            marker = amqp.Message(value, delivery_mode=2)
            if ttl is not None:
                marker.properties["expiration"] = str(max(int(ttl * 1000), 1))
            try:
                link.publish_confirmed([(name, marker)])
            except Nacked:
                return False  # the queue is full: the key is already there
            except BackendError as exc:
                if isinstance(exc, BackendUnavailable):
                    raise
                return False  # the queue is full: the key is already there
            return True

        return self._run("kv_set_if_absent", call)

    def kv_exists(self, key: str) -> bool:
        def call(link: Link) -> bool:
            try:
                ok = link.probe_channel().queue_declare(self.names.key(key), passive=True)
            except amqp.exceptions.NotFound:
                link.probe = None
                return False
            return bool(ok.message_count)

        return self._run("kv_exists", call)

    def kv_delete(self, key: str) -> bool:
        def call(link: Link) -> bool:
            name = self.names.key(key)
            try:
                deleted = link.probe_channel().queue_delete(name)
            except amqp.exceptions.NotFound:
                link.probe = None
                return False
            with self._lock:
                self._declared.discard(name)
            return bool(deleted)

        return self._run("kv_delete", call)
