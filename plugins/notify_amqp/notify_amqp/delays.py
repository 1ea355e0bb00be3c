"""Delayed jobs and retries on RabbitMQ: a fixed set of delay buckets.

Each bucket of a job queue is a classic queue with a message TTL whose
dead-letter route leads back to the job queue (no plugin needed). A delay
waits in the longest bucket not longer than it; the job carries its
not-before time, and one that a bucket brought back early is sent round again
for the rest (see :meth:`~notify_amqp.queues.AmqpQueues.reserve`).
"""

from __future__ import annotations

import time

import amqp

from notify_amqp.connection import Link
from notify_amqp.jobs import NOT_BEFORE
from notify_amqp.names import AmqpNames

__all__ = ["DELAY_BUCKETS", "AmqpDelays"]

#: The per-delay queues, in milliseconds. A delay waits in the longest bucket not
#: longer than it, then goes round again for what is left.
DELAY_BUCKETS = (100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 1_800_000)


class AmqpDelays(AmqpNames):
    """Routing by delay for :class:`~notify_amqp.backend.AmqpBackend`."""

    def _route(self, link: Link, queue: str, message: amqp.Message, delay: float) -> str:
        """Where ``message`` goes to become visible after ``delay`` seconds."""
        if delay <= 0:
            message.properties["application_headers"].pop(NOT_BEFORE, None)
            return self._queue(link, queue)
        message.properties["application_headers"][NOT_BEFORE] = time.time() + delay
        ms = delay * 1000
        fitting = [b for b in DELAY_BUCKETS if b <= ms]
        return self._delay_queue(link, queue, fitting[-1] if fitting else DELAY_BUCKETS[0])

    def _delay_queues(self, link: Link, queue: str) -> list[str]:
        """Every bucket of ``queue`` (declared)."""
        return [self._delay_queue(link, queue, bucket) for bucket in DELAY_BUCKETS]
