"""The backend interface: streams and queues, each with a sync and an async face.

**Streams** keep published messages under monotonic, per-stream ids for replay
(``read`` since an id) and live following (``read`` with ``block``).
**Queues** hold jobs for workers: ``reserve`` hides a job for a visibility
timeout, ``ack`` removes it, ``retry`` makes it visible again later,
``release`` gives it back untried and ``dead_letter`` parks it with its error. A backend implements the sync
methods; the async twins run them in a thread unless the backend has native
ones. ``notifycore.testing.BackendContract`` is the test every backend passes.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from notifycore.errors import InvalidStreamId
from notifycore.settings import mask_url

__all__ = [
    "MAX_STREAM_ID_LENGTH",
    "Backend",
    "ConsecutiveIds",
    "DeadLetter",
    "Job",
    "Outage",
    "StreamMessage",
    "StreamRead",
    "id_number",
]

#: The longest stream id any backend parses (a Redis id is at most 41 characters); a client's
#: longer ``Last-Event-ID`` is refused before it is parsed, by backends and web adapters alike.
MAX_STREAM_ID_LENGTH = 64
#: Every number in a stream id fits a signed 64-bit integer (SQLite's, RabbitMQ's offsets).
MAX_STREAM_ID_NUMBER = 2**63 - 1


def id_number(text: str) -> int | None:
    """The number ``text`` spells in ASCII digits; None if it is anything else or too large."""
    if not (isinstance(text, str) and 0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if number <= MAX_STREAM_ID_NUMBER else None


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One published message: its id in the stream and the bytes published."""

    id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamRead:
    """The answer to a stream read.

    ``reset`` is True when the reader's id is older than what the stream
    still retains (or unknown to it): messages were lost to retention and the
    reader must be told, not left with a silent gap.
    """

    messages: list[StreamMessage] = field(default_factory=list)
    reset: bool = False

    @property
    def last_id(self) -> str | None:
        return self.messages[-1].id if self.messages else None


@dataclass(slots=True)
class Job:
    """A reserved queue job; hand it back to ``ack``, ``retry`` or ``dead_letter``."""

    id: str
    queue: str
    payload: bytes
    #: How many times the job has been reserved, this time included.
    attempts: int
    #: Proof of this reservation; a stale receipt (the job was re-reserved) is refused.
    receipt: str
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that ran out of tries or could not be run, with the last error."""

    id: str
    queue: str
    payload: bytes
    attempts: int
    error: str
    failed_at: float


class Backend(abc.ABC):
    """Base class of every backend."""

    #: The entry-point name in ``notifycore.backends``.
    name: ClassVar[str] = ""
    #: True when several processes (or machines) see the same streams and queues.
    shared: ClassVar[bool] = False
    #: Exceptions that mean the broker is unreachable (a retry may help).
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: True when :meth:`release` does not count the delivery it ends (the default
    #: implementation is a :meth:`retry`, which does).
    release_keeps_tries: ClassVar[bool] = False

    def __init__(
        self,
        url: str | None = None,
        *,
        stream_maxlen: int = 10_000,
        stream_max_age: float = 0.0,
    ) -> None:
        self.url = url
        self.stream_maxlen = stream_maxlen
        self.stream_max_age = stream_max_age

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Self:
        """Build the backend from notifycore settings; plugins read their own keys here."""
        return cls(settings.get("BACKEND_URL"), **cls._stream_settings(settings))

    @staticmethod
    def _stream_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments every backend takes from the core's stream settings."""
        return {
            "stream_maxlen": settings.get("STREAM_MAXLEN", 10_000),
            "stream_max_age": settings.get("STREAM_MAX_AGE", 0.0),
        }

    @staticmethod
    def _url_setting(
        settings: Mapping[str, Any], key: str, default: str, schemes: tuple[str, ...]
    ) -> str:
        """``BACKEND_URL`` when it has one of this backend's ``schemes``, else ``key``."""
        url = settings.get("BACKEND_URL")
        if url and str(url).startswith(schemes):
            return str(url)
        return str(settings.get(key) or default)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {mask_url(self.url or '')}>".replace(" >", ">")

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release connections and files; the backend is not used afterwards."""

    # -- streams -----------------------------------------------------------------------------

    @abc.abstractmethod
    def publish(self, stream: str, data: bytes) -> str:
        """Append ``data`` to ``stream``; return its id, greater than every earlier one."""

    def publish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        """Append several messages in order, in as few round trips as the broker allows."""
        return [self.publish(stream, data) for data in items]

    @abc.abstractmethod
    def read(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        """Messages of ``stream`` with ids after ``after`` (None: from the oldest kept).

        With ``block`` (seconds), wait that long at most for a message when none
        is there yet. At most ``limit`` messages, oldest first.
        """

    @abc.abstractmethod
    def last_id(self, stream: str) -> str | None:
        """The id of the newest message of ``stream``, None when it has none."""

    def id_key(self, message_id: str) -> tuple[int, ...]:
        """A sort key for ids of this backend: later messages have greater keys.

        The default reads ``"42"`` and Redis-style ``"1700000000000-3"`` ids.
        """
        return tuple(int(part) for part in message_id.split("-"))

    def follow(
        self,
        stream: str,
        after: str | None = None,
        *,
        stop: threading.Event | None = None,
        poll: float = 1.0,
    ) -> Iterator[StreamRead]:
        """Yield batches of new messages as they come, until ``stop`` is set.

        ``after=None`` starts with what is published from now on. A batch whose
        ``reset`` is True tells the follower it missed messages.
        """
        cursor = self.last_id(stream) if after is None else after
        while stop is None or not stop.is_set():
            batch = self.read(stream, cursor, block=poll)
            if batch.messages or batch.reset:
                cursor = self._advance(stream, cursor, batch)
                yield batch

    def _advance(self, stream: str, cursor: str | None, batch: StreamRead) -> str | None:
        """Where a follower reads next: after the batch, or after the newest id on an empty reset."""
        if batch.messages:
            return batch.messages[-1].id
        return self.last_id(stream) if batch.reset else cursor

    # -- queues ------------------------------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        """Add a job at the end of ``queue``, visible after ``delay`` seconds; return its id."""

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        """Add several jobs in order, in as few round trips as the broker allows."""
        return [self.enqueue(queue, payload) for payload in payloads]

    @abc.abstractmethod
    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        """Take the oldest visible job and hide it for ``visibility_timeout`` seconds.

        Waits ``block`` seconds at most for one; None when there is none.
        """

    def reserve_many(self, queue: str, count: int, *, visibility_timeout: float) -> list[Job]:
        """Up to ``count`` visible jobs at once (no waiting), in as few round trips as possible."""
        jobs: list[Job] = []
        while len(jobs) < count:
            job = self.reserve(queue, visibility_timeout=visibility_timeout)
            if job is None:
                break
            jobs.append(job)
        return jobs

    def ack_many(self, jobs: Iterable[Job]) -> int:
        """:meth:`ack` several jobs; return how many were still held and removed."""
        return sum(1 for job in jobs if self.ack(job))

    @abc.abstractmethod
    def ack(self, job: Job) -> bool:
        """Remove a done job; False when the reservation had expired and was taken over."""

    @abc.abstractmethod
    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        """Make the job visible again after ``delay`` seconds, recording ``error``."""

    def release(self, job: Job) -> bool:
        """Give a reserved job back, visible again at once, as if this delivery never happened.

        A stopping worker returns the jobs it could not finish this way. A
        backend that can (``release_keeps_tries``) takes back the attempt the
        reservation counted; this default is a :meth:`retry` without delay,
        which keeps it. False when the reservation was no longer held.
        """
        return self.retry(job, delay=0.0, error=job.last_error or "")

    @abc.abstractmethod
    def dead_letter(self, job: Job, *, error: str) -> bool:
        """Move the job to the queue's dead letters with ``error``, recording ``job.attempts`` tries.

        (A worker that dead-letters a job on a delivery it does not run passes
        the job with the tries it really had.)
        """

    @abc.abstractmethod
    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        """The dead letters of ``queue``, oldest first."""

    @abc.abstractmethod
    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        """Put dead letters (all, or those ``ids``) back on the queue with fresh tries."""

    @abc.abstractmethod
    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or those ``ids``); return how many."""

    @abc.abstractmethod
    def queue_length(self, queue: str) -> int:
        """Jobs not yet acked or dead: waiting, delayed and reserved."""

    # -- de-duplication ----------------------------------------------------------------------

    @abc.abstractmethod
    def mark_done(self, key: str, *, ttl: float) -> bool:
        """Record that the work ``key`` names is done, for ``ttl`` seconds.

        Returns False when it was already recorded (and not yet expired).
        """

    @abc.abstractmethod
    def is_done(self, key: str) -> bool:
        """True when :meth:`mark_done` recorded ``key`` and its ttl has not run out."""

    # -- async faces -------------------------------------------------------------------------
    # Defaults run the sync method in a worker thread; backends with native
    # async clients override them.

    async def apublish(self, stream: str, data: bytes) -> str:
        return await asyncio.to_thread(self.publish, stream, data)

    async def apublish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        return await asyncio.to_thread(self.publish_many, stream, list(items))

    async def aread(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        return await asyncio.to_thread(self.read, stream, after, limit=limit, block=block)

    async def alast_id(self, stream: str) -> str | None:
        return await asyncio.to_thread(self.last_id, stream)

    async def afollow(
        self, stream: str, after: str | None = None, *, poll: float = 1.0
    ) -> AsyncIterator[StreamRead]:
        """Async :meth:`follow`; stop it by leaving the ``async for`` or cancelling."""
        cursor = await self.alast_id(stream) if after is None else after
        while True:
            batch = await self.aread(stream, cursor, block=poll)
            if batch.messages or batch.reset:
                if batch.messages:
                    cursor = batch.messages[-1].id
                elif batch.reset:
                    cursor = await self.alast_id(stream)
                yield batch

    async def aenqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        return await asyncio.to_thread(self.enqueue, queue, payload, delay=delay)

    async def aenqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        return await asyncio.to_thread(self.enqueue_many, queue, list(payloads))

    async def areserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        return await asyncio.to_thread(
            self.reserve, queue, visibility_timeout=visibility_timeout, block=block
        )

    async def aack(self, job: Job) -> bool:
        return await asyncio.to_thread(self.ack, job)

    async def aretry(self, job: Job, *, delay: float, error: str) -> bool:
        return await asyncio.to_thread(self.retry, job, delay=delay, error=error)

    async def adead_letter(self, job: Job, *, error: str) -> bool:
        return await asyncio.to_thread(self.dead_letter, job, error=error)


class Outage:
    """A follower's view of a broker outage, for backends whose ``follow`` reconnects.

    :meth:`failed` reports ``disconnected`` once (the ``notifycore_backend_state``
    hook) and gives the back-off before the next try (50 ms doubling to 2 s);
    :meth:`recovered` reports ``reconnected`` after an outage.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.down = False
        self.delay = 0.05

    def _report(self, state: str, error: BaseException | None) -> None:
        from notifycore.plugins import get_plugins  # the plugin manager imports backends

        get_plugins().backend_state(self.backend, state, error)

    def failed(self, error: BaseException) -> float:
        """Seconds to wait before trying again."""
        if not self.down:
            self.down = True
            self._report("disconnected", error)
        delay, self.delay = self.delay, min(self.delay * 2, 2.0)
        return delay

    def wait(self, error: BaseException, stop: threading.Event | None) -> bool:
        """:meth:`failed`, then wait; True when ``stop`` was set meanwhile."""
        delay = self.failed(error)
        if stop is not None:
            return stop.wait(delay)
        time.sleep(delay)
        return False

    def recovered(self) -> None:
        if self.down:
            self.down, self.delay = False, 0.05
            self._report("reconnected", None)


class ConsecutiveIds:
    """For backends whose stream ids are consecutive integers (memory, SQLite).

    The backend implements ``_append(stream, items) -> ids``; publishing and id
    parsing come from here.
    """

    #: Named in the error for an id that is not of this form.
    id_owner: ClassVar[str] = "stream"

    def _append(self, stream: str, items: Iterable[bytes]) -> list[str]:
        raise NotImplementedError

    def publish(self, stream: str, data: bytes) -> str:
        return self._append(stream, (data,))[0]

    def publish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        return self._append(stream, items)

    def _parse_id(self, after: str | None) -> int:
        """-1 for "from the start"; :class:`InvalidStreamId` for anything but digits."""
        if after is None:
            return -1
        number = id_number(after)
        if number is not None:
            return number
        raise InvalidStreamId(f"not a {self.id_owner} stream id: {after!r}")
