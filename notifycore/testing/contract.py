"""The backend contract: the tests every backend must pass.

Subclass :class:`BackendContract` in a test module and provide
``make_backend(**options)``; pytest then runs every test against it::

    class TestMyBackend(BackendContract):
        def make_backend(self, **options):
            return MyBackend("my://127.0.0.1", **options)

``options`` are the keyword arguments of :class:`~notifycore.Backend`
(``stream_maxlen``, ``stream_max_age``). Names of streams and queues are
random, so a backend may be shared between tests. Waits are bounded; nothing
here asserts how fast a backend is.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from notifycore.backends.base import Backend, Job

__all__ = ["BackendContract"]

#: Long enough that a reservation never lapses during a test that relies on it.
HOLD = 30.0


def _name(kind: str) -> str:
    return f"contract-{kind}-{uuid.uuid4().hex[:12]}"


def _reserve_within(backend: Backend, queue: str, seconds: float, vt: float = HOLD) -> Job | None:
    """Poll (bounded) until a job is visible; for waits on delays and timeouts."""
    deadline = time.monotonic() + seconds
    while True:
        job = backend.reserve(queue, visibility_timeout=vt, block=0.05)
        if job is not None or time.monotonic() >= deadline:
            return job


class BackendContract:
    """Streams and queues as ``notifycore.backends.base.Backend`` documents them."""

    def make_backend(self, **options: Any) -> Backend:
        raise NotImplementedError("subclasses return a fresh backend from make_backend()")

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        backend = self.make_backend()
        try:
            yield backend
        finally:
            backend.close()

    # -- streams -----------------------------------------------------------------------------

    def test_publish_returns_increasing_ids_and_read_returns_all_in_order(
        self, backend: Backend
    ) -> None:
        stream = _name("s")
        payloads = [f'{{"n":{i}}}'.encode() for i in range(20)]
        ids = [backend.publish(stream, p) for p in payloads]
        assert len(set(ids)) == 20
        batch = backend.read(stream)
        assert [m.data for m in batch.messages] == payloads
        assert [m.id for m in batch.messages] == ids
        assert batch.reset is False
        assert backend.last_id(stream) == ids[-1]

    def test_read_after_an_id_returns_only_later_messages(self, backend: Backend) -> None:
        stream = _name("s")
        ids = [backend.publish(stream, f"m{i}".encode()) for i in range(10)]
        batch = backend.read(stream, ids[3])
        assert [m.id for m in batch.messages] == ids[4:]
        assert batch.reset is False
        assert backend.read(stream, ids[-1]).messages == []

    def test_read_limit_pages_through_a_stream(self, backend: Backend) -> None:
        stream = _name("s")
        ids = [backend.publish(stream, f"m{i}".encode()) for i in range(7)]
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            batch = backend.read(stream, cursor, limit=3)
            if not batch.messages:
                break
            assert len(batch.messages) <= 3
            seen.extend(m.id for m in batch.messages)
            cursor = batch.last_id
        assert seen == ids

    def test_unknown_stream_reads_empty(self, backend: Backend) -> None:
        stream = _name("s")
        assert backend.read(stream).messages == []
        assert backend.last_id(stream) is None

    def test_streams_are_independent(self, backend: Backend) -> None:
        a, b = _name("a"), _name("b")
        backend.publish(a, b"for a")
        backend.publish(b, b"for b")
        assert [m.data for m in backend.read(a).messages] == [b"for a"]
        assert [m.data for m in backend.read(b).messages] == [b"for b"]

    def test_bytes_are_kept_exactly(self, backend: Backend) -> None:
        stream = _name("s")
        data = '{"title":"héllo ✓ \\n \\u2028","body":"line\\nbreak"}'.encode()
        backend.publish(stream, data)
        assert backend.read(stream).messages[0].data == data

    def test_publish_many_keeps_order(self, backend: Backend) -> None:
        stream = _name("s")
        ids = backend.publish_many(stream, [b"1", b"2", b"3"])
        assert len(ids) == 3
        assert [m.data for m in backend.read(stream).messages] == [b"1", b"2", b"3"]
        assert [m.id for m in backend.read(stream).messages] == ids
        later = backend.publish(stream, b"4")
        assert [m.id for m in backend.read(stream, ids[-1]).messages] == [later]

    def test_blocking_read_wakes_on_publish_from_another_thread(self, backend: Backend) -> None:
        stream = _name("s")
        first = backend.publish(stream, b"old")
        timer = threading.Timer(0.05, backend.publish, (stream, b"new"))
        timer.start()
        try:
            batch = backend.read(stream, first, block=10.0)
        finally:
            timer.join()
        assert [m.data for m in batch.messages] == [b"new"]

    def test_blocking_read_returns_empty_when_nothing_comes(self, backend: Backend) -> None:
        stream = _name("s")
        last = backend.publish(stream, b"x")
        assert backend.read(stream, last, block=0.1).messages == []

    def test_retention_by_count_reports_a_reset_for_lost_ids(self) -> None:
        backend = self.make_backend(stream_maxlen=5)
        try:
            stream = _name("s")
            ids = [backend.publish(stream, f"m{i}".encode()) for i in range(50)]
            kept = backend.read(stream)
            assert kept.reset is False
            assert kept.messages[-1].id == ids[-1]
            assert len(kept.messages) < 50
            behind = backend.read(stream, ids[0])
            assert behind.reset is True
            assert behind.messages and behind.messages[-1].id == ids[-1]
            recent = backend.read(stream, ids[-2])
            assert recent.reset is False
            assert [m.id for m in recent.messages] == [ids[-1]]
        finally:
            backend.close()

    def test_follow_yields_new_messages_until_stopped(self, backend: Backend) -> None:
        stream = _name("s")
        backend.publish(stream, b"before")
        stop = threading.Event()
        got: list[bytes] = []
        started = threading.Event()

        def follow() -> None:
            iterator = backend.follow(stream, stop=stop, poll=0.05)
            started.set()
            for batch in iterator:
                got.extend(m.data for m in batch.messages)
                if len(got) >= 3:
                    stop.set()

        thread = threading.Thread(target=follow)
        thread.start()
        started.wait(5)
        time.sleep(0.1)  # let the follower take its starting position
        for data in (b"a", b"b", b"c"):
            backend.publish(stream, data)
        thread.join(10)
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        assert got == [b"a", b"b", b"c"]

    def test_async_stream_faces(self, backend: Backend) -> None:
        stream = _name("s")

        async def scenario() -> list[bytes]:
            first = await backend.apublish(stream, b"one")
            many = await backend.apublish_many(stream, [b"two", b"three"])
            assert await backend.alast_id(stream) == many[-1]
            batch = await backend.aread(stream, first)
            assert [m.id for m in batch.messages] == many

            async def later() -> None:
                await asyncio.sleep(0.05)
                await backend.apublish(stream, b"four")

            task = asyncio.create_task(later())
            woke = await backend.aread(stream, many[-1], block=10.0)
            await task
            return [m.data for m in woke.messages]

        assert asyncio.run(scenario()) == [b"four"]

    def test_afollow_yields_new_messages(self, backend: Backend) -> None:
        stream = _name("s")

        async def scenario() -> list[bytes]:
            got: list[bytes] = []

            async def consume() -> None:
                async for batch in backend.afollow(stream, poll=0.05):
                    got.extend(m.data for m in batch.messages)
                    if len(got) >= 2:
                        return

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.1)
            await backend.apublish(stream, b"x")
            await backend.apublish(stream, b"y")
            await asyncio.wait_for(task, 10)
            return got

        assert asyncio.run(scenario()) == [b"x", b"y"]

    # -- queues ------------------------------------------------------------------------------

    def test_jobs_come_out_first_in_first_out(self, backend: Backend) -> None:
        queue = _name("q")
        payloads = [f"job{i}".encode() for i in range(10)]
        ids = [backend.enqueue(queue, p) for p in payloads]
        assert len(set(ids)) == 10
        assert backend.queue_length(queue) == 10
        out = []
        for _ in range(10):
            job = backend.reserve(queue, visibility_timeout=HOLD)
            assert job is not None
            assert job.attempts == 1
            assert job.queue == queue
            out.append((job.id, job.payload))
            assert backend.ack(job) is True
        assert out == list(zip(ids, payloads, strict=True))
        assert backend.queue_length(queue) == 0
        assert backend.reserve(queue, visibility_timeout=HOLD) is None

    def test_enqueue_many_keeps_order(self, backend: Backend) -> None:
        queue = _name("q")
        ids = backend.enqueue_many(queue, [b"a", b"b", b"c"])
        assert len(set(ids)) == 3
        got = []
        for _ in range(3):
            job = backend.reserve(queue, visibility_timeout=HOLD)
            assert job is not None
            got.append(job.payload)
            backend.ack(job)
        assert got == [b"a", b"b", b"c"]

    def test_empty_queue_reserve_returns_none_after_block(self, backend: Backend) -> None:
        queue = _name("q")
        assert backend.reserve(queue, visibility_timeout=HOLD) is None
        assert backend.reserve(queue, visibility_timeout=HOLD, block=0.1) is None

    def test_blocking_reserve_wakes_on_enqueue(self, backend: Backend) -> None:
        queue = _name("q")
        timer = threading.Timer(0.05, backend.enqueue, (queue, b"late"))
        timer.start()
        try:
            job = backend.reserve(queue, visibility_timeout=HOLD, block=10.0)
        finally:
            timer.join()
        assert job is not None and job.payload == b"late"

    def test_reserved_job_is_hidden_until_its_visibility_timeout(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"work")
        first = backend.reserve(queue, visibility_timeout=0.3)
        assert first is not None
        assert backend.reserve(queue, visibility_timeout=HOLD) is None
        second = _reserve_within(backend, queue, 10.0)
        assert second is not None, "a job whose worker vanished must become visible again"
        assert second.id == first.id
        assert second.payload == b"work"
        assert second.attempts == 2
        assert backend.ack(first) is False, "a lapsed reservation must not ack"
        assert backend.ack(second) is True
        assert backend.queue_length(queue) == 0

    def test_retry_waits_for_its_delay_and_counts_attempts(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"flaky")
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None
        assert backend.retry(job, delay=0.3, error="boom") is True
        assert backend.reserve(queue, visibility_timeout=HOLD) is None
        again = _reserve_within(backend, queue, 10.0)
        assert again is not None
        assert again.attempts == 2
        assert again.last_error == "boom"
        assert backend.queue_length(queue) == 1
        assert backend.ack(again) is True

    def test_release_gives_the_job_back_at_once_with_its_try_and_error(
        self, backend: Backend
    ) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"held")
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None
        assert backend.retry(job, delay=0.0, error="first failure") is True
        job = _reserve_within(backend, queue, 10.0)
        assert job is not None and job.attempts == 2
        assert backend.release(job) is True
        assert backend.release(job) is False, "a released reservation is no longer held"
        assert backend.ack(job) is False
        again = _reserve_within(backend, queue, 10.0)
        assert again is not None, "a released job is visible again at once"
        assert again.payload == b"held"
        assert again.last_error == "first failure"
        # A stopping worker's job keeps its try where the backend can take the attempt back.
        assert again.attempts == (2 if backend.release_keeps_tries else 3)
        assert backend.queue_length(queue) == 1
        assert backend.ack(again) is True

    def test_dead_letter_records_the_tries_the_worker_gives(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"lost")
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None and job.attempts == 1
        # A worker that dead-letters on a delivery it does not run passes the tries it had.
        job.attempts = 7
        assert backend.dead_letter(job, error="worker died") is True
        (letter,) = backend.dead_letters(queue)
        assert letter.attempts == 7
        assert letter.error == "worker died"

    def test_delayed_enqueue(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"later", delay=0.3)
        backend.enqueue(queue, b"now")
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None and job.payload == b"now"
        backend.ack(job)
        assert backend.reserve(queue, visibility_timeout=HOLD) is None
        later = _reserve_within(backend, queue, 10.0)
        assert later is not None and later.payload == b"later"

    def test_reserve_many_and_ack_many(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue_many(queue, [str(i).encode() for i in range(7)])
        first = backend.reserve_many(queue, 5, visibility_timeout=HOLD)
        assert [j.payload for j in first] == [str(i).encode() for i in range(5)]
        assert len({j.id for j in first}) == 5 and all(j.attempts == 1 for j in first)
        rest = backend.reserve_many(queue, 5, visibility_timeout=HOLD)
        assert [j.payload for j in rest] == [b"5", b"6"]
        assert backend.reserve_many(queue, 5, visibility_timeout=HOLD) == []
        assert backend.ack_many([*first, *rest]) == 7
        assert backend.ack_many(first) == 0, "acking twice removes nothing"
        assert backend.queue_length(queue) == 0

    def test_dead_letters_keep_the_error_and_can_be_requeued_or_purged(
        self, backend: Backend
    ) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"poison")
        backend.enqueue(queue, b"also poison")
        for _ in range(2):
            job = backend.reserve(queue, visibility_timeout=HOLD)
            assert job is not None
            assert backend.dead_letter(job, error=f"bad {job.payload!r}") is True
        assert backend.reserve(queue, visibility_timeout=HOLD) is None
        assert backend.queue_length(queue) == 0
        letters = backend.dead_letters(queue)
        assert [d.payload for d in letters] == [b"poison", b"also poison"]
        assert letters[0].error == "bad b'poison'"
        assert letters[0].attempts == 1
        assert backend.requeue_dead_letters(queue, [letters[0].id]) == 1
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None and job.payload == b"poison"
        assert job.attempts == 1, "a requeued dead letter starts with fresh tries"
        backend.ack(job)
        assert [d.payload for d in backend.dead_letters(queue)] == [b"also poison"]
        assert backend.purge_dead_letters(queue) == 1
        assert backend.dead_letters(queue) == []

    def test_queues_are_independent(self, backend: Backend) -> None:
        a, b = _name("a"), _name("b")
        backend.enqueue(a, b"for a")
        assert backend.reserve(b, visibility_timeout=HOLD) is None
        job = backend.reserve(a, visibility_timeout=HOLD)
        assert job is not None and job.payload == b"for a"

    def test_concurrent_reservers_never_share_a_job(self, backend: Backend) -> None:
        queue = _name("q")
        total = 300
        backend.enqueue_many(queue, [str(i).encode() for i in range(total)])
        taken: list[list[bytes]] = [[] for _ in range(4)]

        def work(slot: int) -> None:
            for _ in range(total):
                job = backend.reserve(queue, visibility_timeout=HOLD)
                if job is None:
                    return
                taken[slot].append(job.payload)
                backend.ack(job)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        everything = [p for chunk in taken for p in chunk]
        assert len(everything) == total
        assert sorted(everything, key=int) == [str(i).encode() for i in range(total)]

    def test_async_queue_faces(self, backend: Backend) -> None:
        queue = _name("q")

        async def scenario() -> None:
            await backend.aenqueue(queue, b"one")
            await backend.aenqueue_many(queue, [b"two"])
            job = await backend.areserve(queue, visibility_timeout=HOLD)
            assert job is not None and job.payload == b"one"
            assert await backend.aack(job) is True
            job = await backend.areserve(queue, visibility_timeout=HOLD)
            assert job is not None and job.payload == b"two"
            assert await backend.aretry(job, delay=0, error="again") is True
            job = await backend.areserve(queue, visibility_timeout=HOLD, block=5)
            assert job is not None and job.attempts == 2
            assert await backend.adead_letter(job, error="done trying") is True

        asyncio.run(scenario())
        assert [d.error for d in backend.dead_letters(queue)] == ["done trying"]

    # -- de-duplication ----------------------------------------------------------------------

    def test_mark_done_records_a_key_once_until_it_expires(self, backend: Backend) -> None:
        key = _name("k")
        assert backend.is_done(key) is False
        assert backend.mark_done(key, ttl=HOLD) is True
        assert backend.is_done(key) is True
        assert backend.mark_done(key, ttl=HOLD) is False
        short = _name("k")
        assert backend.mark_done(short, ttl=0.2) is True
        deadline = time.monotonic() + 10
        while backend.is_done(short) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.is_done(short) is False
        assert backend.mark_done(short, ttl=HOLD) is True
