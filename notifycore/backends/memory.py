"""The in-process backend: streams and queues in memory, for tests and single processes.

Safe from several threads and from asyncio at once: one condition variable
guards the state and wakes blocked sync readers; async readers wait on futures
that a publish resolves through their own event loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from notifycore.backends.base import (
    Backend,
    ConsecutiveIds,
    DeadLetter,
    Job,
    QueuedJob,
    StreamMessage,
    StreamRead,
)
from notifycore.backends.memory_inbox import MemoryInboxes

__all__ = ["MemoryBackend"]

logger = logging.getLogger("notifycore.backends.memory")

#: The methods a follower reads with: a subclass that overrides one is followed, not listened to.
_READING = ("follow", "read", "read_next")


@dataclass(slots=True)
class _Stream:
    # (id, published_at, data); ids are consecutive, so an id maps to an index.
    messages: deque[tuple[int, float, bytes]] = field(default_factory=deque)
    last: int = 0
    trimmed_upto: int = 0
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )
    # listen()'s callbacks, replaced (never changed in place) when one comes or goes.
    listeners: tuple[Callable[[StreamRead], None], ...] = ()


@dataclass(slots=True)
class _JobState:
    payload: bytes
    seq: int
    attempts: int = 0
    last_error: str | None = None
    receipt: str | None = None
    deadline: float = 0.0


@dataclass(slots=True)
class _Queue:
    # (visible_at, seq, job id); entries of jobs that left the queue are skipped lazily.
    ready: list[tuple[float, int, str]] = field(default_factory=list)
    jobs: dict[str, _JobState] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)
    dead: dict[str, DeadLetter] = field(default_factory=dict)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MemoryBackend(MemoryInboxes, ConsecutiveIds, Backend):
    """Streams and queues in this process's memory; nothing survives the process."""

    name = "memory"
    id_owner = "memory"
    shared = False

    def __init__(
        self,
        url: str | None = None,
        *,
        stream_maxlen: int = 10_000,
        stream_max_age: float = 0.0,
    ) -> None:
        super().__init__(url, stream_maxlen=stream_maxlen, stream_max_age=stream_max_age)
        self._cond = threading.Condition(threading.RLock())
        self._streams: dict[str, _Stream] = {}
        self._queues: dict[str, _Queue] = {}
        self._seq = itertools.count(1)
        # key -> (value, expires at on the monotonic clock, or None)
        self._kv: dict[str, tuple[bytes, float | None]] = {}

    # -- streams -----------------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    def _trim(self, stream: _Stream, now: float) -> None:
        messages = stream.messages
        while len(messages) > self.stream_maxlen:
            stream.trimmed_upto = messages.popleft()[0]
        if self.stream_max_age > 0:
            oldest = now - self.stream_max_age
            while messages and messages[0][1] < oldest:
                stream.trimmed_upto = messages.popleft()[0]

    def _append(self, name: str, items: Iterable[bytes]) -> list[str]:
        items = items if isinstance(items, (list, tuple)) else list(items)
        for data in items:  # all or nothing: a listener is told of every message appended
            if not isinstance(data, bytes):
                raise TypeError(f"stream messages are bytes, not {type(data).__name__}")
        now = time.time()
        with self._cond:
            stream = self._stream(name)
            ids = []
            for data in items:
                stream.last += 1
                stream.messages.append((stream.last, now, data))
                ids.append(str(stream.last))
            self._trim(stream, now)
            waiters, stream.waiters = stream.waiters, []
            self._cond.notify_all()
            if stream.listeners:  # under the lock: each listener sees the batches in id order
                self._tell(stream.listeners, ids, items)
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, future)
        return ids

    def _read_now(self, name: str, after: int, limit: int | None) -> StreamRead:
        stream = self._streams.get(name)
        if stream is None:
            return StreamRead([], reset=after > 0)
        self._trim(stream, time.time())
        messages = stream.messages
        if after < 0:
            start = 0
            reset = False
        elif after > stream.last:
            # An id this stream never gave (from before a restart): start again from the
            # oldest message kept, and say so.
            start = 0
            reset = True
        else:
            reset = after < stream.trimmed_upto  # lost to retention
            start = max(0, after - messages[0][0] + 1) if messages else 0
        stop = len(messages) if limit is None else min(len(messages), start + limit)
        return StreamRead(
            [StreamMessage(str(i), d) for i, _, d in itertools.islice(messages, start, stop)],
            reset=reset,
        )

    def read(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        position = self._parse_id(after)
        deadline = None if not block else time.monotonic() + block
        with self._cond:
            while True:
                batch = self._read_now(stream, position, limit)
                if batch.messages or batch.reset or deadline is None:
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                self._cond.wait(remaining)

    async def aread(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        position = self._parse_id(after)
        loop = asyncio.get_running_loop()
        deadline = None if not block else loop.time() + block
        while True:
            with self._cond:
                batch = self._read_now(stream, position, limit)
                if batch.messages or batch.reset or deadline is None:
                    return batch
                future: asyncio.Future[None] = loop.create_future()
                self._stream(stream).waiters.append((loop, future))
            remaining = deadline - loop.time()
            if remaining <= 0:
                return batch
            try:
                await asyncio.wait_for(future, remaining)
            except TimeoutError:
                with self._cond:
                    return self._read_now(stream, position, limit)
            finally:
                with self._cond:  # also when cancelled: no future left behind
                    found = self._stream(stream)
                    if (loop, future) in found.waiters:
                        found.waiters.remove((loop, future))
                    self._forget_if_unused(stream, found)

    @staticmethod
    def _tell(
        listeners: tuple[Callable[[StreamRead], None], ...],
        ids: list[str],
        items: list[bytes] | tuple[bytes, ...],
    ) -> None:
        batch = StreamRead([StreamMessage(i, d) for i, d in zip(ids, items, strict=True)])
        for listener in listeners:
            try:
                listener(batch)
            except Exception:  # one listener's fault is not the publisher's
                logger.exception("a listener of a memory stream failed")

    def listen(
        self, stream: str, callback: Callable[[StreamRead], None]
    ) -> Callable[[], None] | None:
        cls = type(self)
        if any(getattr(cls, n) is not getattr(MemoryBackend, n) for n in _READING):
            return None  # a subclass that reads its own way is followed, like any backend
        with self._cond:
            found = self._stream(stream)
            found.listeners = (*found.listeners, callback)

        def stop() -> None:
            with self._cond:
                found.listeners = tuple(c for c in found.listeners if c is not callback)
                self._forget_if_unused(stream, found)

        return stop

    def _forget_if_unused(self, name: str, stream: _Stream) -> None:
        """Drop a stream nothing was published to once nobody waits on it (lock held):
        names listened to or read from once (a user's stream) do not pile up."""
        if (
            not stream.last
            and not stream.listeners
            and not stream.waiters
            and self._streams.get(name) is stream
        ):
            del self._streams[name]

    def last_id(self, stream: str) -> str | None:
        with self._cond:
            found = self._streams.get(stream)
            return str(found.last) if found is not None and found.last else None

    async def alast_id(self, stream: str) -> str | None:
        return self.last_id(stream)

    async def apublish(self, stream: str, data: bytes) -> str:
        return self.publish(stream, data)

    # -- queues ------------------------------------------------------------------------------

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _push(self, queue: _Queue, payload: bytes, delay: float) -> str:
        if not isinstance(payload, bytes):
            raise TypeError(f"job payloads are bytes, not {type(payload).__name__}")
        seq = next(self._seq)
        job_id = str(seq)
        queue.jobs[job_id] = _JobState(payload, seq)
        heapq.heappush(queue.ready, (time.monotonic() + max(delay, 0.0), seq, job_id))
        return job_id

    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        with self._cond:
            job_id = self._push(self._queue(queue), payload, delay)
            self._cond.notify_all()
        return job_id

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        with self._cond:
            state = self._queue(queue)
            ids = [self._push(state, payload, 0.0) for payload in payloads]
            self._cond.notify_all()
        return ids

    def _take(self, name: str, queue: _Queue, visibility_timeout: float, now: float) -> Job | None:
        for job_id in list(queue.reserved):
            state = queue.jobs[job_id]
            if state.deadline <= now:  # its worker is gone or too slow: visible again
                queue.reserved.discard(job_id)
                state.receipt = None
                heapq.heappush(queue.ready, (now, state.seq, job_id))
        while queue.ready and queue.ready[0][0] <= now:
            _, seq, job_id = heapq.heappop(queue.ready)
            state_or_none = queue.jobs.get(job_id)
            if state_or_none is None or job_id in queue.reserved or state_or_none.seq != seq:
                continue
            state = state_or_none
            state.attempts += 1
            state.receipt = uuid.uuid4().hex
            state.deadline = now + visibility_timeout
            queue.reserved.add(job_id)
            return Job(job_id, name, state.payload, state.attempts, state.receipt, state.last_error)
        return None

    def _next_change(self, queue: _Queue, now: float) -> float | None:
        times = [queue.ready[0][0]] if queue.ready else []
        times.extend(queue.jobs[j].deadline for j in queue.reserved)
        return min(times) - now if times else None

    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        deadline = None if not block else time.monotonic() + block
        with self._cond:
            state = self._queue(queue)
            while True:
                now = time.monotonic()
                job = self._take(queue, state, visibility_timeout, now)
                if job is not None or deadline is None or now >= deadline:
                    return job
                wait = deadline - now
                change = self._next_change(state, now)
                if change is not None:
                    wait = min(wait, max(change, 0.001))
                self._cond.wait(wait)

    def _owned(self, job: Job) -> tuple[_Queue, _JobState] | None:
        queue = self._queues.get(job.queue)
        if queue is None or job.id not in queue.reserved:
            return None
        state = queue.jobs[job.id]
        if state.receipt != job.receipt:
            return None
        return queue, state

    def ack(self, job: Job) -> bool:
        with self._cond:
            owned = self._owned(job)
            if owned is None:
                return False
            queue, _ = owned
            queue.reserved.discard(job.id)
            del queue.jobs[job.id]
            return True

    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        with self._cond:
            owned = self._owned(job)
            if owned is None:
                return False
            queue, state = owned
            queue.reserved.discard(job.id)
            state.receipt = None
            state.last_error = error
            state.seq = next(self._seq)
            heapq.heappush(queue.ready, (time.monotonic() + max(delay, 0.0), state.seq, job.id))
            self._cond.notify_all()
            return True

    def release(self, job: Job) -> bool:
        with self._cond:
            owned = self._owned(job)
            if owned is None:
                return False
            queue, state = owned
            queue.reserved.discard(job.id)
            state.receipt = None
            state.attempts = max(state.attempts - 1, 0)
            heapq.heappush(queue.ready, (time.monotonic(), state.seq, job.id))
            self._cond.notify_all()
            return True

    def dead_letter(self, job: Job, *, error: str) -> bool:
        with self._cond:
            owned = self._owned(job)
            if owned is None:
                return False
            queue, state = owned
            queue.reserved.discard(job.id)
            del queue.jobs[job.id]
            queue.dead[job.id] = DeadLetter(
                job.id, job.queue, state.payload, job.attempts, error, time.time()
            )
            return True

    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        with self._cond:
            letters = list(self._queue(queue).dead.values())
        return letters if limit is None else letters[:limit]

    def _select_dead(self, queue: _Queue, ids: Iterable[str] | None) -> list[str]:
        if ids is None:
            return list(queue.dead)
        return [i for i in ids if i in queue.dead]

    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        with self._cond:
            state = self._queue(queue)
            chosen = self._select_dead(state, ids)
            for job_id in chosen:
                letter = state.dead.pop(job_id)
                self._push(state, letter.payload, 0.0)
            self._cond.notify_all()
            return len(chosen)

    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        with self._cond:
            state = self._queue(queue)
            chosen = self._select_dead(state, ids)
            for job_id in chosen:
                del state.dead[job_id]
            return len(chosen)

    def queue_length(self, queue: str) -> int:
        with self._cond:
            return len(self._queue(queue).jobs)

    def browse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        with self._cond:
            state = self._queues.get(queue)
            if state is None:
                return []
            jobs = itertools.islice(state.jobs.items(), limit)
            return [QueuedJob(i, j.payload, j.attempts, j.last_error) for i, j in jobs]

    # -- optional capabilities: claims, a key-value store, counters ------------------------------

    def _live(self, key: str, now: float) -> bytes | None:
        found = self._kv.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= now:
            del self._kv[key]
            return None
        return value

    def _store(self, key: str, value: bytes, ttl: float | None, now: float) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"values are bytes, not {type(value).__name__}")
        if len(self._kv) > 10_000 and os.urandom(1) == b"\x00":  # forget what expired, now and then
            self._kv = {k: v for k, v in self._kv.items() if v[1] is None or v[1] > now}
        self._kv[key] = (value, None if ttl is None else now + ttl)

    def kv_get(self, key: str) -> bytes | None:
        with self._cond:
            return self._live(key, time.monotonic())

    def kv_exists(self, key: str) -> bool:
        return self.kv_get(key) is not None

    def kv_set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        with self._cond:
            self._store(key, value, ttl, time.monotonic())

    def kv_set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        now = time.monotonic()
        with self._cond:
            if self._live(key, now) is not None:
                return False
            self._store(key, value, ttl, now)
            return True

    def kv_delete(self, key: str) -> bool:
        with self._cond:
            return self._live(key, time.monotonic()) is not None and bool(self._kv.pop(key))

    def kv_incr(self, key: str, amount: int = 1) -> int:
        now = time.monotonic()
        with self._cond:
            count = int(self._live(key, now) or 0) + amount
            self._store(key, str(count).encode(), None, now)
            return count
