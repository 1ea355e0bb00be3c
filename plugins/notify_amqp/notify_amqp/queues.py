"""Job queues on RabbitMQ: durable quorum queues, persistent messages, publisher confirms.

A job is reserved by ``basic.get``, or by a consumer (prefetch ``prefetch`` per
connection) when the reservation may wait, and acked only after the consumer
ran. The visibility timeout is kept by the process that reserved (its leases,
:mod:`notify_amqp.connection`): a reservation that outlived it is returned by
the keeper thread; when a worker's connection closes or goes silent, RabbitMQ
itself hands its unacked jobs out again. Attempts are the ``x-nc-attempts``
header plus the quorum queue's ``x-delivery-count``, so deliveries lost to
crashes count too. ``retry`` and ``release`` publish the job again (confirmed)
and ack the held copy — RabbitMQ cannot change a held message, so the base
class's derivation is the natural one, done here on the link that holds the
job. Only JSON job payloads are taken; anything else goes to the dead letters
unread, never unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import amqp

from notify_amqp.connection import Blocked, Lease, Link, body, headers, text
from notify_amqp.delays import AmqpDelays
from notify_amqp.jobs import ACCEPT, ATTEMPTS, ERROR, FAILED_AT, NOT_BEFORE, job_message
from notifycore.backends.base import Job, QueuedJob
from notifycore.errors import BackendUnavailable

__all__ = ["AmqpQueues"]


def _listed(message: Any, tries: int) -> QueuedJob:
    error = headers(message).get(ERROR)
    return QueuedJob(
        text(message.properties.get("message_id", "")),
        body(message),
        tries,
        None if error is None else text(error),
    )


class AmqpQueues(AmqpDelays):
    """The queue operations of :class:`~notify_amqp.backend.AmqpBackend`."""

    prefetch: int
    _async_thread: ThreadPoolExecutor | None = None

    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        job_id = uuid.uuid4().hex

        def call(link: Link) -> str:
            message = job_message(job_id, payload, 0)
            link.publish_confirmed([(self._route(link, queue, message, delay), message)])
            return job_id

        return self._run("enqueue", call)

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        items = [(uuid.uuid4().hex, p) for p in payloads]

        def call(link: Link) -> list[str]:
            name = self._queue(link, queue)
            link.publish_confirmed([(name, job_message(i, p, 0)) for i, p in items])
            return [i for i, _ in items]

        return self._run("enqueue", call) if items else []

    def _take(self, link: Link, queue: str, message: Any, vt: float) -> Job | None:
        """A delivered message as a reserved job; None when it was not one to run yet."""
        channel = message.channel
        tag = message.delivery_info["delivery_tag"]
        found = headers(message)
        attempts = int(found.get(ATTEMPTS, 0)) + int(found.get("x-delivery-count", 0)) + 1
        job_id = text(message.properties.get("message_id") or f"amqp-{tag}")
        not_before = float(found.get(NOT_BEFORE, 0) or 0)
        content_type = text(message.properties.get("content_type", ""))
        if content_type not in ACCEPT:
            letter = job_message(job_id, body(message), attempts)
            letter.properties["application_headers"].update(
                {
                    ERROR: f"content type {content_type!r} refused: jobs are JSON only",
                    FAILED_AT: time.time(),
                }
            )
            self._pass_on(link, channel, tag, [(self._dead_queue(link, queue), letter)])
            return None
        remaining = not_before - time.time()
        if remaining > 0.005:  # a delay bucket brought it back early: send it round again
            again = job_message(job_id, body(message), attempts - 1)
            if ERROR in found:
                again.properties["application_headers"][ERROR] = found[ERROR]
            self._pass_on(link, channel, tag, [(self._route(link, queue, again, remaining), again)])
            return None
        receipt = f"{link.number}:{uuid.uuid4().hex}"
        error = found.get(ERROR)
        job = Job(
            job_id,
            queue,
            body(message),
            attempts,
            receipt,
            None if error is None else text(error),
        )
        held = QueuedJob(job.id, job.payload, job.attempts, job.last_error)
        lease = Lease(channel, tag, time.monotonic() + vt, queue, link.generation, held)
        link.leases[receipt] = lease
        return job

    @staticmethod
    def _pass_on(link: Link, channel: Any, tag: int, items: list[tuple[str, Any]]) -> None:
        """Publish (confirmed) what replaces a delivered message, then ack it; on failure
        give the message back instead of holding it."""
        try:
            link.publish_confirmed(items)
        except BaseException:
            with contextlib.suppress(Exception):
                if channel.is_open:
                    channel.basic_reject(tag, requeue=True)
            raise
        channel.basic_ack(tag)

    def _consume(self, link: Link, queue: str, name: str) -> deque[tuple[float, Any]]:
        buffer = link.buffers.setdefault(queue, deque())
        if queue not in link.consumers:
            assert link.conn is not None
            if link.jobs is None:
                link.jobs = link.conn.channel()
                # The job a thread runs stays unacked and counts: ``prefetch`` more may wait.
                link.jobs.basic_qos(0, self.prefetch + 1, False)

            def delivered(message: Any) -> None:
                buffer.append((time.monotonic(), message))

            link.consumers[queue] = link.jobs.basic_consume(name, callback=delivered)
        return buffer

    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        self._sweep_all()
        deadline = time.monotonic() + (block or 0.0)

        def call(link: Link) -> Job | None:
            name = self._queue(link, queue)
            link.hold = visibility_timeout
            while True:
                # A reservation that may wait is taken through a consumer (prefetch); one that
                # may not is a basic.get (first in, first out), unless this thread consumes
                # the queue already: a basic.get beside a consumer would hold more jobs than
                # its prefetch, and out of order.
                buffer = self._consume(link, queue, name) if block else link.buffers.get(queue)
                if buffer is not None and not buffer:
                    link.drain(0)
                message = buffer.popleft()[1] if buffer else None
                if message is None and queue not in link.consumers:
                    message = link.channel.basic_get(name)
                if message is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._consume(link, queue, name)
                    link.drain(min(left, 1.0))
                    continue
                job = self._take(link, queue, message, visibility_timeout)
                if job is not None:
                    return job

        return self._run("reserve", call)

    async def areserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        """:meth:`reserve` on one thread of this backend for every async caller: a thread
        that consumes a queue holds what its consumer was given, so async reservations
        must not hop between the threads of a pool."""
        with self._lock:
            if self._async_thread is None:
                self._async_thread = ThreadPoolExecutor(1, thread_name_prefix="notify-amqp-async")
            executor = self._async_thread
        return await asyncio.get_running_loop().run_in_executor(
            executor,
            functools.partial(
                self.reserve, queue, visibility_timeout=visibility_timeout, block=block
            ),
        )

    def _finish(self, job: Job, what: str, then: Callable[[Link, Lease], None]) -> bool:
        number, _, _ = job.receipt.partition(":")
        link = self._links.get(int(number)) if number.isdigit() else None
        if link is None:
            return False

        def call(link: Link) -> bool:
            # First read what RabbitMQ sent: the end of a connection it gave up on (a frozen
            # process, missed heartbeats) or of a channel it closed (a consumer timeout), so
            # that the job it took back is not reported as done here.
            link.drain(0)
            link.sweep(time.monotonic())
            lease = link.leases.pop(job.receipt, None)
            if lease is None or lease.generation != link.generation:
                return False
            try:
                then(link, lease)
            except Blocked:
                # RabbitMQ blocks publishers: not done, and handed back now the job would be
                # reserved and refused again at once, in a loop, for as long as the alarm
                # lasts. It stays leased (its visibility timeout hands it back), or, held on
                # a connection set aside as blocked, goes back when that one closes.
                if lease.generation == link.generation:
                    link.leases[job.receipt] = lease
                raise
            except BaseException:
                # Not done: hand the job back to RabbitMQ rather than hold it unleased.
                with contextlib.suppress(Exception):
                    if lease.channel.is_open:
                        lease.channel.basic_reject(lease.tag, requeue=True)
                raise
            return True

        try:
            return self._run(what, call, link)
        except BackendUnavailable:
            return False  # the connection that held the job broke: RabbitMQ hands it out again

    def ack(self, job: Job) -> bool:
        return self._finish(job, "ack", lambda link, lease: lease.channel.basic_ack(lease.tag))

    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        def then(link: Link, lease: Lease) -> None:
            message = job_message(job.id, job.payload, job.attempts, error=error)
            link.publish_confirmed([(self._route(link, job.queue, message, delay), message)])
            lease.channel.basic_ack(lease.tag)

        return self._finish(job, "retry", then)

    def release(self, job: Job) -> bool:
        # Published again with one attempt less, not rejected: a reject would count a delivery.
        def then(link: Link, lease: Lease) -> None:
            message = job_message(
                job.id, job.payload, max(job.attempts - 1, 0), error=job.last_error
            )
            link.publish_confirmed([(self._route(link, job.queue, message, 0.0), message)])
            lease.channel.basic_ack(lease.tag)

        return self._finish(job, "release", then)

    def queue_length(self, queue: str) -> int:
        """Ready and delayed jobs, and those this process holds; RabbitMQ (AMQP 0-9-1)
        does not report jobs another process has reserved."""

        def call(link: Link) -> int:
            names = [self._queue(link, queue)]
            names += self._delay_queues(link, queue)
            total = 0
            for name in names:
                total += link.probe_channel().queue_declare(name, passive=True).message_count
            return total

        total = self._run("queue_length", call)
        with self._lock:
            links = list(self._links.values())
        for link in links:
            with link.lock:
                total += sum(1 for lease in link.leases.values() if lease.queue == queue)
                total += len(link.buffers.get(queue, ()))
        return total

    def browse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        """The jobs this process holds, the ready jobs and the delayed ones.

        AMQP 0-9-1 cannot look at a queue without taking its messages, and a quorum
        queue counts a taken message that goes back as a delivery: so the ready jobs
        are taken, published again in their order with the tries they had, and the
        taken ones acked (confirmed first: nothing is lost, a crash in between leaves
        copies). The delay buckets are classic queues: their jobs are looked at and
        given back. RabbitMQ does not say which jobs other processes hold.
        """

        def call(link: Link) -> list[QueuedJob]:
            assert link.conn is not None
            name = self._queue(link, queue)
            listed: list[QueuedJob] = []
            channel = link.conn.channel()
            try:
                held = []
                for _ in range(channel.queue_declare(name, passive=True).message_count):
                    message = channel.basic_get(name)
                    if message is None:
                        break
                    held.append(message)
                copies = []
                for message in held:
                    found = headers(message)
                    tries = int(found.pop(ATTEMPTS, 0)) + int(found.pop("x-delivery-count", 0))
                    found[ATTEMPTS] = tries
                    properties = {**message.properties, "application_headers": found}
                    copies.append((name, amqp.Message(body(message), **properties)))
                    listed.append(_listed(message, tries))
                if copies:
                    link.publish_confirmed(copies)
                    channel.basic_ack(held[-1].delivery_info["delivery_tag"], multiple=True)
            finally:
                link.close_channel(channel)
            for bucket in self._delay_queues(link, queue):
                channel = link.conn.channel()
                try:  # a classic queue: what a closed channel held goes back, uncounted
                    while (message := channel.basic_get(bucket)) is not None:
                        listed.append(_listed(message, int(headers(message).get(ATTEMPTS, 0))))
                finally:
                    channel.close()
            return listed

        waiting = self._run("browse", call)
        with self._lock:
            links = list(self._links.values())
        mine = []
        for link in links:
            with link.lock:
                mine += [lease.job for lease in link.leases.values() if lease.queue == queue]
                for _, message in link.buffers.get(queue, ()):
                    found = headers(message)
                    tries = int(found.get(ATTEMPTS, 0)) + int(found.get("x-delivery-count", 0))
                    mine.append(_listed(message, tries))
        listed = [*mine, *waiting]
        return listed if limit is None else listed[:limit]
