"""The backend interface: seven primitives, everything else derived from them.

A backend implements **seven primitives** — for streams ``publish``, ``read``
and ``last_id``; for queues ``enqueue`` (with a delay), ``reserve`` (with a
visibility timeout), ``ack`` and ``browse`` — and inherits the rest: batches
(``publish_many``, ``enqueue_many``, ``reserve_many``, ``ack_many``,
``ack_and_reserve``), following
a stream (``follow`` and ``afollow``, one implementation), ``retry``,
``release``, ``dead_letter`` and the dead-letter admin operations,
``queue_length``, and the async twins (a thread each, by default). A backend
overrides a derived operation only where its broker does it atomically or
faster. Optional capabilities (a key-value store, counters) are small
protocols in :mod:`notifycore.backends.capabilities`.
``notifycore.testing.contract.BackendContract`` is the test every backend passes.
"""

from __future__ import annotations

import abc
import asyncio
import threading
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from notifycore.backends.envelope import DeadEnvelope, open_dead, open_job, seal_dead, seal_job
from notifycore.errors import BackendUnavailable, InvalidStreamId
from notifycore.settings import mask_url

__all__ = [
    "MAX_STREAM_ID_LENGTH",
    "Backend",
    "ConsecutiveIds",
    "DeadLetter",
    "Job",
    "Outage",
    "QueuedJob",
    "StreamMessage",
    "StreamRead",
    "id_number",
]

#: The longest stream id any backend parses (a Redis id is at most 41 characters); a client's
#: longer ``Last-Event-ID`` is refused before it is parsed, by backends and web adapters alike.
MAX_STREAM_ID_LENGTH = 64
#: Every number in a stream id fits a signed 64-bit integer (SQLite's, RabbitMQ's offsets).
MAX_STREAM_ID_NUMBER = 2**63 - 1
#: How long the derived dead-letter operations hold the dead letters they go through.
_ADMIN_HOLD = 300.0


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
    reader must be told, not left with a silent gap. The messages of such a
    read start with the oldest the stream still keeps.
    """

    messages: list[StreamMessage] = field(default_factory=list)
    reset: bool = False

    @property
    def last_id(self) -> str | None:
        return self.messages[-1].id if self.messages else None


@dataclass(slots=True)
class Job:
    """A reserved queue job; hand it back to ``ack``, ``retry``, ``release`` or ``dead_letter``.

    A backend builds it from what it stored: when that is a job envelope (left by a
    derived :meth:`Backend.retry` or :meth:`Backend.release`), the job opens it, so
    ``payload`` is the job's own and ``attempts`` adds the tries it had before.
    """

    id: str
    queue: str
    payload: bytes
    #: How many times the job has been reserved, this time included.
    attempts: int
    #: Proof of this reservation; a stale receipt (the job was re-reserved) is refused.
    receipt: str
    last_error: str | None = None

    def __post_init__(self) -> None:
        if self.payload[:1] == b"\x00":
            self.payload, before, error = open_job(self.payload)
            self.attempts += before
            if self.last_error is None:
                self.last_error = error


@dataclass(slots=True)
class QueuedJob:
    """A job as :meth:`Backend.browse` lists it: in its queue, waiting, delayed or reserved."""

    id: str
    payload: bytes
    #: The tries it had so far (a reserved job's current one included), where the backend knows.
    attempts: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        if self.payload[:1] == b"\x00":
            self.payload, before, error = open_job(self.payload)
            self.attempts += before
            if self.last_error is None:
                self.last_error = error


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that ran out of tries or could not be run, with the last error."""

    id: str
    queue: str
    payload: bytes
    attempts: int
    error: str
    failed_at: float


#: One step of the follow plan: ("call", method name, args, kwargs), ("wait", seconds)
#: or ("emit", batch). The sync and async followers differ only in how they run a call.
_Step = tuple[Any, ...]


class Backend(abc.ABC):
    """Base class of every backend: implement the seven abstract primitives."""

    #: The entry-point name in ``notifycore.backends``.
    name: ClassVar[str] = ""
    #: True when several processes (or machines) see the same streams and queues.
    shared: ClassVar[bool] = False
    #: Exceptions that mean the broker is unreachable (a retry may help).
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    #: Whether the default :meth:`aappend` calls :meth:`apublish` (else :meth:`append` in a
    #: thread); set for each subclass.
    _aappend_publishes: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """An ``append`` (``aappend``) inherited from further up the class tree than
        ``publish`` (``apublish``) would skip what the subclass's ``publish`` does (sign,
        filter, count...): such a subclass gets the defaults, which call its ``publish``."""
        super().__init_subclass__(**kwargs)

        def rank(name: str) -> int:  # where the method is defined: 0 is the class itself
            return next(i for i, k in enumerate(cls.__mro__) if name in vars(k))

        if cls.append is not Backend.append and rank("append") > rank("publish"):
            cls.append = Backend.append  # type: ignore[method-assign]
        if cls.aappend is not Backend.aappend and rank("aappend") > rank("apublish"):
            cls.aappend = Backend.aappend  # type: ignore[method-assign]
        cls._aappend_publishes = cls.append is Backend.append or rank("apublish") < rank("append")

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

    # -- the seven primitives ----------------------------------------------------------------

    @abc.abstractmethod
    def publish(self, stream: str, data: bytes) -> str:
        """Append ``data`` to ``stream``; return its id, greater than every earlier one."""

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
        is there yet. At most ``limit`` messages, oldest first. An ``after`` older
        than the retention, or one the stream never gave, is answered with
        ``reset=True`` and the messages from the oldest kept.
        """

    @abc.abstractmethod
    def last_id(self, stream: str) -> str | None:
        """The id of the newest message of ``stream``, None when it has none."""

    @abc.abstractmethod
    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        """Add a job at the end of ``queue``, visible after ``delay`` seconds; return its id."""

    @abc.abstractmethod
    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        """Take the oldest visible job and hide it for ``visibility_timeout`` seconds.

        Waits ``block`` seconds at most for one; None when there is none. A job whose
        reservation lapsed is visible again, and its attempts count that reservation.
        """

    @abc.abstractmethod
    def ack(self, job: Job) -> bool:
        """Remove a done job; False when the reservation had expired and was taken over."""

    @abc.abstractmethod
    def browse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        """The jobs of ``queue`` not yet acked — waiting, delayed and reserved — without
        reserving them or counting a try; the waiting ones in the order ``reserve``
        takes them. At most ``limit``."""

    # -- streams, derived --------------------------------------------------------------------

    def publish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        """Append several messages in order, in as few round trips as the broker allows."""
        return [self.publish(stream, data) for data in items]

    def append(self, stream: str, data: bytes) -> None:
        """Store ``data`` on ``stream`` as :meth:`publish` does, without returning its id.

        For a publisher with no use for the id (``PushConsumer``, the inbox):
        a backend that learns a message's id only after storing it (RabbitMQ
        streams: from a consumer that sees the message come back) returns as
        soon as the broker has stored it. The default is :meth:`publish`.
        """
        self.publish(stream, data)

    def listen(
        self, stream: str, callback: Callable[[StreamRead], None]
    ) -> Callable[[], None] | None:
        """Call ``callback(batch)`` with what each publish to ``stream`` appends, or None.

        Optional, for a backend that sees every publish itself (one process's
        memory): the fan-out then needs no thread following the stream. The
        callback runs in the publishing thread, in id order, and must not
        block nor call the backend. Returns the function that stops the
        calls; the default returns None: the stream is followed instead.
        """
        return None

    def id_key(self, message_id: str) -> tuple[int, ...]:
        """A sort key for ids of this backend: later messages have greater keys.

        The default reads ``"42"`` and Redis-style ``"1700000000000-3"`` ids.
        """
        return tuple(int(part) for part in message_id.split("-"))

    def read_next(self, stream: str, after: str, *, block: float) -> StreamRead:
        """A follower's next read, after an id this stream just gave it; the default is
        :meth:`read`. A backend may make it cheaper (no check that ``after`` still exists)."""
        return self.read(stream, after, block=block)

    def _follow_plan(
        self, stream: str, after: str | None, poll: float
    ) -> Generator[_Step, Any, None]:
        """What a follower does, free of I/O: :meth:`follow` and :meth:`afollow` run it.

        The first read (and the first after an outage) is a :meth:`read`, which checks
        the cursor; the next ones are :meth:`read_next`. An outage
        (:class:`BackendUnavailable`) is reported once and waited out with back-off.
        """
        outage = Outage(self)
        cursor = after
        while after is None:  # from now on: start after the newest message
            try:
                cursor = yield ("call", "last_id", (stream,), {})
                break
            except BackendUnavailable as exc:
                yield ("wait", outage.failed(exc))
        checked = False
        while True:
            try:
                if checked and cursor is not None:
                    batch = yield ("call", "read_next", (stream, cursor), {"block": poll})
                else:
                    batch = yield ("call", "read", (stream, cursor), {"block": poll})
                    checked = True
            except BackendUnavailable as exc:
                checked = False
                yield ("wait", outage.failed(exc))
                continue
            outage.recovered()
            if not (batch.messages or batch.reset):
                continue
            if batch.messages:
                cursor = batch.messages[-1].id
            else:  # a reset with nothing kept: go on after the newest id
                try:
                    cursor = yield ("call", "last_id", (stream,), {})
                except BackendUnavailable as exc:
                    checked = False
                    yield ("wait", outage.failed(exc))
            yield ("emit", batch)

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
        ``reset`` is True tells the follower it missed messages. Through an outage
        it reconnects with back-off and resumes where it was.
        """
        plan = self._follow_plan(stream, after, poll)
        reply: Any = None
        error: BaseException | None = None
        try:
            while stop is None or not stop.is_set():
                step = plan.send(reply) if error is None else plan.throw(error)
                reply = error = None
                if step[0] == "emit":
                    yield step[1]
                elif step[0] == "wait":
                    if stop is not None and stop.wait(step[1]):
                        return
                    if stop is None:
                        time.sleep(step[1])
                else:
                    try:
                        reply = getattr(self, step[1])(*step[2], **step[3])
                    except BackendUnavailable as exc:
                        error = exc
        finally:
            plan.close()

    async def afollow(
        self, stream: str, after: str | None = None, *, poll: float = 1.0
    ) -> AsyncIterator[StreamRead]:
        """Async :meth:`follow` (the same plan, run with the async twins); stop it by
        leaving the ``async for`` or cancelling."""
        plan = self._follow_plan(stream, after, poll)
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                step = plan.send(reply) if error is None else plan.throw(error)
                reply = error = None
                if step[0] == "emit":
                    yield step[1]
                elif step[0] == "wait":
                    await asyncio.sleep(step[1])
                else:
                    try:
                        reply = await getattr(self, "a" + step[1])(*step[2], **step[3])
                    except BackendUnavailable as exc:
                        error = exc
        finally:
            plan.close()

    # -- queues, derived ---------------------------------------------------------------------

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        """Add several jobs in order, in as few round trips as the broker allows."""
        return [self.enqueue(queue, payload) for payload in payloads]

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

    def ack_and_reserve(
        self, done: Sequence[Job], queue: str, *, count: int = 1, visibility_timeout: float
    ) -> tuple[list[bool], list[Job]]:
        """What a worker does between two batches of jobs: :meth:`ack` the ``done`` ones,
        then :meth:`reserve_many` up to ``count`` jobs of ``queue`` without waiting (none
        for 0), in as few round trips as the broker allows. Returns each ack's answer, in
        order, and the jobs reserved. The acks count even when no job comes."""
        acked = [self.ack(job) for job in done]
        if count <= 0:
            return acked, []
        return acked, self.reserve_many(queue, count, visibility_timeout=visibility_timeout)

    # The derived retry, release and dead_letter ack first: a reservation that is no
    # longer held (it lapsed, another worker has the job) is refused and adds nothing,
    # like every backend's own. A process killed between the ack and the enqueue loses
    # that job; a backend that can do both at once overrides them.

    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        """Make the job visible again after ``delay`` seconds, recording ``error``.

        Derived: ack, then enqueue the payload again in a job envelope that carries
        its tries and ``error``. False when the reservation was no longer held.
        """
        if not self.ack(job):
            return False
        self.enqueue(
            job.queue, seal_job(job.payload, attempts=job.attempts, error=error), delay=delay
        )
        return True

    def release(self, job: Job) -> bool:
        """Give a reserved job back, visible again at once, as if this delivery never happened.

        A stopping worker returns the jobs it could not finish this way: the attempt
        this reservation counted is taken back and the last error kept. False when the
        reservation was no longer held.
        """
        if not self.ack(job):
            return False
        tries = max(job.attempts - 1, 0)
        self.enqueue(job.queue, seal_job(job.payload, attempts=tries, error=job.last_error))
        return True

    def dead_letter_queue(self, queue: str) -> str:
        """Where the derived dead-letter operations keep the dead letters of ``queue``."""
        return f"{queue}.dead"

    def dead_letter(self, job: Job, *, error: str) -> bool:
        """Move the job to the queue's dead letters with ``error``, recording ``job.attempts`` tries.

        (A worker that dead-letters a job on a delivery it does not run passes the job
        with the tries it really had.) Derived: ack, then enqueue a dead-letter envelope
        on :meth:`dead_letter_queue`; the job's id becomes the dead letter's id.
        """
        letter = DeadEnvelope(job.id, job.payload, job.attempts, error, time.time())
        if not self.ack(job):
            return False
        self.enqueue(self.dead_letter_queue(job.queue), seal_dead(letter))
        return True

    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        """The dead letters of ``queue``, oldest first."""
        letters = []
        for held in self.browse(self.dead_letter_queue(queue), limit=limit):
            opened = open_dead(held.payload)
            if opened is None:  # put there by other means: shown as it is
                letters.append(DeadLetter(held.id, queue, held.payload, held.attempts, "", 0.0))
            else:
                letters.append(
                    DeadLetter(
                        opened.id,
                        queue,
                        opened.payload,
                        opened.attempts,
                        opened.error,
                        opened.failed_at,
                    )
                )
        return letters

    def _sift_dead_letters(self, queue: str, ids: Iterable[str] | None, requeue: bool) -> int:
        """Go once through the dead letters: those chosen (all, or ``ids``) are requeued with
        fresh tries or dropped, the others enqueued again as they were, in their order."""
        wanted = None if ids is None else set(ids)
        dead = self.dead_letter_queue(queue)
        chosen = 0
        for _ in range(len(self.browse(dead))):
            held = self.reserve(dead, visibility_timeout=_ADMIN_HOLD)
            if held is None:
                break
            opened = open_dead(held.payload)
            letter_id, payload = (
                (held.id, held.payload) if opened is None else (opened.id, opened.payload)
            )
            if wanted is None or letter_id in wanted:
                chosen += 1
                if requeue:
                    self.enqueue(queue, payload)
            else:
                self.enqueue(dead, held.payload)
            self.ack(held)
        return chosen

    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        """Put dead letters (all, or those ``ids``) back on the queue with fresh tries."""
        return self._sift_dead_letters(queue, ids, requeue=True)

    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or those ``ids``); return how many."""
        return self._sift_dead_letters(queue, ids, requeue=False)

    def queue_length(self, queue: str) -> int:
        """Jobs not yet acked or dead: waiting, delayed and reserved."""
        return len(self.browse(queue))

    # -- async faces -------------------------------------------------------------------------
    # Defaults run the sync method in a worker thread; backends with native
    # async clients override them.

    async def apublish(self, stream: str, data: bytes) -> str:
        return await asyncio.to_thread(self.publish, stream, data)

    async def aappend(self, stream: str, data: bytes) -> None:
        if self._aappend_publishes:  # append is publish's default: apublish, native or not
            await self.apublish(stream, data)
        else:
            await asyncio.to_thread(self.append, stream, data)

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

    async def aread_next(self, stream: str, after: str, *, block: float) -> StreamRead:
        return await asyncio.to_thread(self.read_next, stream, after, block=block)

    async def alast_id(self, stream: str) -> str | None:
        return await asyncio.to_thread(self.last_id, stream)

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

    async def abrowse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        return await asyncio.to_thread(self.browse, queue, limit=limit)

    async def aretry(self, job: Job, *, delay: float, error: str) -> bool:
        return await asyncio.to_thread(self.retry, job, delay=delay, error=error)

    async def arelease(self, job: Job) -> bool:
        return await asyncio.to_thread(self.release, job)

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
