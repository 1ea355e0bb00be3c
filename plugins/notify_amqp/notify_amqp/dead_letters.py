"""Dead letters on RabbitMQ: a classic queue per job queue, with the error, the attempts and
the time in headers. Listing, requeueing and purging take the dead letters on a channel of
their own and close it, so the ones not acted on go back in their order (a classic queue
counts no delivery for that)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from notify_amqp.connection import Lease, Link, body, headers, text
from notify_amqp.jobs import ATTEMPTS, ERROR, FAILED_AT, job_message
from notify_amqp.queues import AmqpQueues
from notifycore.backends.base import DeadLetter, Job

__all__ = ["AmqpDeadLetters"]

T = TypeVar("T")


class AmqpDeadLetters(AmqpQueues):
    """The dead letters of :class:`~notify_amqp.backend.AmqpBackend`."""

    def dead_letter(self, job: Job, *, error: str) -> bool:
        def then(link: Link, lease: Lease) -> None:
            message = job_message(job.id, job.payload, job.attempts, error=error)
            message.properties["application_headers"][FAILED_AT] = time.time()
            link.publish_confirmed([(self._dead_queue(link, job.queue), message)])
            lease.channel.basic_ack(lease.tag)

        return self._finish(job, "dead_letter", then)

    def _browse(
        self,
        queue: str,
        limit: int | None,
        act: Callable[[Link, Any, list[Any]], T],
    ) -> T:
        """Take the dead letters (up to ``limit``) on a channel of their own, let ``act``
        ack or publish some, and close it: the rest go back in their order."""

        def call(link: Link) -> T:
            name = self._dead_queue(link, queue)
            assert link.conn is not None
            channel = link.conn.channel()
            try:
                held: list[Any] = []
                while limit is None or len(held) < limit:
                    message = channel.basic_get(name)
                    if message is None:
                        break
                    held.append(message)
                return act(link, channel, held)
            finally:
                link.close_channel(channel)

        return self._run("dead letters", call)

    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        def letters(link: Link, channel: Any, held: list[Any]) -> list[DeadLetter]:
            out = []
            for message in held:
                found = headers(message)
                out.append(
                    DeadLetter(
                        text(message.properties.get("message_id", "")),
                        queue,
                        body(message),
                        int(found.get(ATTEMPTS, 0)),
                        text(found.get(ERROR, "")),
                        float(found.get(FAILED_AT, 0.0)),
                    )
                )
            return out

        return self._browse(queue, limit, letters)

    def _chosen(self, held: list[Any], ids: Iterable[str] | None) -> list[Any]:
        wanted = None if ids is None else set(ids)
        return [
            m for m in held if wanted is None or text(m.properties.get("message_id", "")) in wanted
        ]

    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        def requeue(link: Link, channel: Any, held: list[Any]) -> int:
            chosen = self._chosen(held, ids)
            name = self._queue(link, queue)
            link.publish_confirmed(
                [(name, job_message(text(m.properties["message_id"]), body(m), 0)) for m in chosen]
            )
            for message in chosen:
                channel.basic_ack(message.delivery_info["delivery_tag"])
            return len(chosen)

        return self._browse(queue, None, requeue)

    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        def purge(link: Link, channel: Any, held: list[Any]) -> int:
            chosen = self._chosen(held, ids)
            for message in chosen:
                channel.basic_ack(message.delivery_info["delivery_tag"])
            return len(chosen)

        return self._browse(queue, None, purge)
