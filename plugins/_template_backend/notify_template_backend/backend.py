"""A notifycore backend that implements only the seven primitives.

Streams and queues live in this process's memory, behind one condition
variable: replace the body of each primitive with your broker's calls. The
rest — batches, ``follow`` and ``afollow``, ``retry``, ``release``, dead
letters and their admin, ``queue_length``, the async twins — comes from
``notifycore.Backend``, derived from these seven; override one only where
your broker does it atomically or faster. ``tests/test_backend.py`` runs
notifycore's whole contract suite against it.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from notifycore import InvalidStreamId
from notifycore.backends.base import (
    Backend,
    Job,
    QueuedJob,
    StreamMessage,
    StreamRead,
    id_number,
)

__all__ = ["TemplateBackend"]


@dataclass
class _Stream:
    #: (id, published at, data), oldest first; ids are consecutive integers from 1.
    messages: deque[tuple[int, float, bytes]] = field(default_factory=deque)
    last: int = 0
    #: The newest id retention dropped: a reader behind it is told (a reset).
    trimmed: int = 0


@dataclass
class _Held:
    payload: bytes
    #: When the job may be reserved (``time.monotonic()``): after a delay, or when the
    #: reservation that hides it lapses.
    visible_at: float
    attempts: int = 0
    receipt: str = ""


class TemplateBackend(Backend):
    """Streams and queues in this process (``BACKEND = "template"``)."""

    name = "template"
    shared = False

    def __init__(
        self, url: str | None = None, *, stream_maxlen: int = 10_000, stream_max_age: float = 0.0
    ) -> None:
        super().__init__(url, stream_maxlen=stream_maxlen, stream_max_age=stream_max_age)
        self._cond = threading.Condition()
        self._streams: dict[str, _Stream] = {}
        # Per queue, its jobs by id in the order they were enqueued: first in, first out.
        self._queues: dict[str, dict[str, _Held]] = {}
        self._ids = itertools.count(1)

    # -- streams: publish, read, last_id -----------------------------------------------------

    def publish(self, stream: str, data: bytes) -> str:
        if not isinstance(data, bytes):
            raise TypeError(f"stream messages are bytes, not {type(data).__name__}")
        with self._cond:
            kept = self._streams.setdefault(stream, _Stream())
            kept.last += 1
            kept.messages.append((kept.last, time.time(), data))
            self._trim(kept)
            self._cond.notify_all()
            return str(kept.last)

    def _trim(self, kept: _Stream) -> None:
        """Retention: at most ``stream_maxlen`` messages, none older than ``stream_max_age``."""
        oldest = time.time() - self.stream_max_age
        while kept.messages and (
            len(kept.messages) > self.stream_maxlen
            or (self.stream_max_age > 0 and kept.messages[0][1] < oldest)
        ):
            kept.trimmed = kept.messages.popleft()[0]

    def _read_now(self, stream: str, after: int, limit: int | None) -> StreamRead:
        kept = self._streams.get(stream)
        if kept is None:
            return StreamRead([], reset=after > 0)  # an id of a stream that is not there
        self._trim(kept)
        unknown = after > kept.last  # an id this stream never gave: from the oldest kept
        reset = unknown or 0 <= after < kept.trimmed
        start = -1 if unknown else after
        messages = [StreamMessage(str(i), data) for i, _, data in kept.messages if i > start]
        return StreamRead(messages[:limit], reset=reset)

    def read(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        position = -1 if after is None else id_number(after)
        if position is None:
            raise InvalidStreamId(f"not a template stream id: {after!r}")
        deadline = time.monotonic() + (block or 0.0)
        with self._cond:
            while True:
                batch = self._read_now(stream, position, limit)
                remaining = deadline - time.monotonic()
                if batch.messages or batch.reset or remaining <= 0:
                    return batch
                self._cond.wait(remaining)  # a publish wakes it

    def last_id(self, stream: str) -> str | None:
        with self._cond:
            kept = self._streams.get(stream)
            return str(kept.last) if kept is not None and kept.last else None

    # -- queues: enqueue, reserve, ack, browse -----------------------------------------------

    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        if not isinstance(payload, bytes):
            raise TypeError(f"job payloads are bytes, not {type(payload).__name__}")
        with self._cond:
            job_id = str(next(self._ids))
            held = _Held(payload, time.monotonic() + max(delay, 0.0))
            self._queues.setdefault(queue, {})[job_id] = held
            self._cond.notify_all()
            return job_id

    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        deadline = time.monotonic() + (block or 0.0)
        with self._cond:
            while True:
                now = time.monotonic()
                jobs = self._queues.get(queue, {})
                for job_id, held in jobs.items():
                    if held.visible_at <= now:  # waiting, due, or its reservation lapsed
                        held.attempts += 1
                        held.receipt = uuid.uuid4().hex
                        held.visible_at = now + visibility_timeout
                        return Job(job_id, queue, held.payload, held.attempts, held.receipt)
                if now >= deadline:
                    return None
                # An enqueue wakes it; a delay or a lapsed reservation ends without one.
                soonest = min((h.visible_at for h in jobs.values()), default=deadline)
                self._cond.wait(max(min(deadline, soonest) - now, 0.001))

    def ack(self, job: Job) -> bool:
        with self._cond:
            jobs = self._queues.get(job.queue, {})
            held = jobs.get(job.id)
            if held is None or held.receipt != job.receipt:
                return False  # done already, or reserved again by someone else since
            del jobs[job.id]
            return True

    def browse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        with self._cond:
            jobs = itertools.islice(self._queues.get(queue, {}).items(), limit)
            return [QueuedJob(job_id, held.payload, held.attempts) for job_id, held in jobs]
