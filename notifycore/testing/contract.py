"""The backend contract: the tests every backend must pass, organised by capability.

Subclass :class:`BackendContract` in a test module and provide
``make_backend(**options)``; pytest then runs every test against it::

    class TestMyBackend(BackendContract):
        def make_backend(self, **options):
            return MyBackend("my://127.0.0.1", **options)

``options`` are the keyword arguments of :class:`~notifycore.Backend`
(``stream_maxlen``, ``stream_max_age``). Names of streams and queues are
random, so a backend may be shared between tests. Waits are bounded; nothing
here asserts how fast a backend is.

The tests come in one class per capability — :class:`StreamsContract`,
:class:`QueuesContract`, :class:`DeadLettersContract`,
:class:`DerivedContract` (what the base class derives from the primitives,
and a backend may override), and the optional :class:`ClaimsContract`,
:class:`KeyValueContract`, :class:`CountersContract` and :class:`InboxesContract` — and a
failure names its capability
(``[queues] ...``). An optional capability a backend does not offer is still
checked: it must be refused with a clear ``ConfigurationError``, never
skipped.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from notifycore.backends.base import Backend, Job
from notifycore.backends.capabilities import (
    CAPABILITIES,
    Claims,
    Counters,
    KeyValueStore,
    require,
)
from notifycore.backends.inboxes import Inboxes
from notifycore.errors import ConfigurationError
from notifycore.testing import wait_for

__all__ = [
    "BackendContract",
    "CapabilityFailure",
    "ClaimsContract",
    "CountersContract",
    "DeadLettersContract",
    "DerivedContract",
    "InboxesContract",
    "KeyValueContract",
    "QueuesContract",
    "StreamsContract",
]

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


#: What the follow tests publish until a new follower has taken its starting position.
PROBE = b"probe: is the follower there yet?"


def _until_followed(publish: Callable[[], Any], seen: Callable[[], bool]) -> None:
    """Publish probes until the follower saw one (it follows from then on), 10 s at most."""
    deadline = time.monotonic() + 10
    while not seen():
        assert time.monotonic() < deadline, "the follower never started"
        publish()
        time.sleep(0.05)


class CapabilityFailure(AssertionError):
    """A contract test failed; the message starts with the capability, e.g. ``[streams]``."""


def _naming(capability: str, test: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return test(*args, **kwargs)
        except Exception as exc:
            what = test.__name__.removeprefix("test_").replace("_", " ")
            raise CapabilityFailure(f"[{capability}] {what}: {type(exc).__name__}: {exc}") from exc

    return run


class _Contract:
    """Shared by the capability classes: the backend fixture, and failures that name them."""

    #: The capability the class's tests check, named in every failure.
    capability: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("capability"):
            for attribute, value in list(cls.__dict__.items()):
                if attribute.startswith("test_") and callable(value):
                    setattr(cls, attribute, _naming(cls.capability, value))

    def make_backend(self, **options: Any) -> Backend:
        raise NotImplementedError("subclasses return a fresh backend from make_backend()")

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        backend = self.make_backend()
        try:
            yield backend
        finally:
            backend.close()

    def unknown_id(self, newest: str) -> str:
        """A well-formed id later than ``newest`` that the stream never gave.

        The default adds a million to the first number of the id (``"42"``,
        ``"1700000000000-3"``); override it for ids of another form.
        """
        first, dash, rest = newest.partition("-")
        return f"{int(first) + 1_000_000}{dash}{rest}"


# -- streams ---------------------------------------------------------------------------------


class StreamsContract(_Contract):
    """The stream primitives: ``publish``, ``read`` (since an id, paged, blocking), ``last_id``."""

    capability = "streams"

    def test_publish_returns_increasing_ids_and_read_returns_all_in_order(
        self, backend: Backend
    ) -> None:
        stream = _name("s")
        payloads = [f'{{"n":{i}}}'.encode() for i in range(20)]
        ids = [backend.publish(stream, p) for p in payloads]
        assert len(set(ids)) == 20
        assert [backend.id_key(i) for i in ids] == sorted(backend.id_key(i) for i in ids)
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
            assert behind.messages == kept.messages, "a reset starts with the oldest kept"
            recent = backend.read(stream, ids[-2])
            assert recent.reset is False
            assert [m.id for m in recent.messages] == [ids[-1]]
        finally:
            backend.close()

    def test_an_id_the_stream_never_gave_is_a_reset_from_the_oldest_kept(
        self, backend: Backend
    ) -> None:
        stream = _name("s")
        ids = [backend.publish(stream, f"m{i}".encode()) for i in range(3)]
        future = self.unknown_id(ids[-1])
        batch = backend.read(stream, future)
        assert batch.reset is True
        assert [m.id for m in batch.messages] == ids, "the messages kept, from the oldest"


# -- queues ----------------------------------------------------------------------------------


class QueuesContract(_Contract):
    """The queue primitives: ``enqueue`` (with a delay), ``reserve`` (visibility timeout,
    blocking), ``ack`` and ``browse``."""

    capability = "queues"

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
        assert backend.browse(queue) == []
        assert backend.reserve(queue, visibility_timeout=HOLD) is None

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
        # Long enough that the next call comes within it on a busy machine: a stall past a
        # shorter one would hand the job out again, rightly, and fail the check below.
        first = backend.reserve(queue, visibility_timeout=2.0)
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

    def test_delayed_enqueue(self, backend: Backend) -> None:
        queue = _name("q")
        # 2 s: the checks below that "later" is not yet due come within it on a busy machine.
        backend.enqueue(queue, b"later", delay=2.0)
        backend.enqueue(queue, b"now")
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None and job.payload == b"now"
        backend.ack(job)
        assert backend.reserve(queue, visibility_timeout=HOLD) is None
        later = _reserve_within(backend, queue, 10.0)
        assert later is not None and later.payload == b"later"

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

    def test_browse_lists_waiting_reserved_and_delayed_jobs_without_taking_them(
        self, backend: Backend
    ) -> None:
        queue = _name("q")
        ids = [backend.enqueue(queue, p) for p in (b"first", b"second", b"third")]
        later = backend.enqueue(queue, b"later", delay=HOLD)
        held = backend.reserve(queue, visibility_timeout=HOLD)
        assert held is not None and held.payload == b"first"
        listed = backend.browse(queue)
        assert {j.payload for j in listed} == {b"first", b"second", b"third", b"later"}
        waiting = [j for j in listed if j.payload in (b"second", b"third")]
        assert [j.id for j in waiting] == ids[1:], "waiting jobs in the order reserve takes them"
        assert later in {j.id for j in listed}
        assert len(backend.browse(queue, limit=2)) == 2
        # Browsing took nothing and counted no try.
        assert backend.ack(held) is True
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None and job.payload == b"second" and job.attempts == 1
        backend.ack(job)

    def test_browse_of_an_unknown_queue_is_empty(self, backend: Backend) -> None:
        assert backend.browse(_name("q")) == []


# -- dead letters ----------------------------------------------------------------------------


class DeadLettersContract(_Contract):
    """``dead_letter`` and the dead letters' admin: list, requeue, purge (derived from the
    primitives unless the backend overrides them)."""

    capability = "dead letters"

    def _dead(self, backend: Backend, queue: str, payloads: list[bytes]) -> None:
        for payload in payloads:
            backend.enqueue(queue, payload)
        for _ in payloads:
            job = backend.reserve(queue, visibility_timeout=HOLD)
            assert job is not None
            assert backend.dead_letter(job, error=f"bad {job.payload!r}") is True

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
        assert letter.queue == queue
        assert letter.failed_at > 0

    def test_dead_letters_keep_the_error_and_can_be_requeued_or_purged(
        self, backend: Backend
    ) -> None:
        queue = _name("q")
        self._dead(backend, queue, [b"poison", b"also poison"])
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
        assert job.last_error is None
        backend.ack(job)
        assert [d.payload for d in backend.dead_letters(queue)] == [b"also poison"]
        assert backend.purge_dead_letters(queue) == 1
        assert backend.dead_letters(queue) == []

    def test_a_dead_letter_keeps_its_id_and_order_while_others_are_taken_out(
        self, backend: Backend
    ) -> None:
        queue = _name("q")
        payloads = [f"dead{i}".encode() for i in range(5)]
        self._dead(backend, queue, payloads)
        letters = backend.dead_letters(queue)
        assert [d.payload for d in letters] == payloads
        assert len({d.id for d in letters}) == 5
        assert [d.id for d in backend.dead_letters(queue, limit=2)] == [d.id for d in letters[:2]]
        assert backend.purge_dead_letters(queue, [letters[1].id, "no-such-id"]) == 1
        assert backend.requeue_dead_letters(queue, [letters[3].id]) == 1
        rest = backend.dead_letters(queue)
        assert [(d.id, d.payload) for d in rest] == [
            (d.id, d.payload) for d in (letters[0], letters[2], letters[4])
        ], "the others keep their ids, their order and their errors"
        assert [d.error for d in rest] == [letters[i].error for i in (0, 2, 4)]
        assert backend.requeue_dead_letters(queue, ["no-such-id"]) == 0
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None and job.payload == b"dead3"
        backend.ack(job)
        assert backend.requeue_dead_letters(queue) == 3
        assert backend.dead_letters(queue) == []
        assert backend.queue_length(queue) == 3

    def test_dead_letters_of_queues_are_independent(self, backend: Backend) -> None:
        a, b = _name("a"), _name("b")
        self._dead(backend, a, [b"of a"])
        assert backend.dead_letters(b) == []
        assert backend.purge_dead_letters(b) == 0
        assert [d.payload for d in backend.dead_letters(a)] == [b"of a"]

    def test_a_lapsed_reservation_is_not_dead_lettered(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"slow")
        first = backend.reserve(queue, visibility_timeout=0.3)
        assert first is not None
        second = _reserve_within(backend, queue, 10.0)
        assert second is not None
        assert backend.dead_letter(first, error="too late") is False
        assert backend.dead_letters(queue) == []
        assert backend.ack(second) is True


# -- derived operations ----------------------------------------------------------------------


class DerivedContract(_Contract):
    """What the base class derives from the primitives (and a backend may override): batches,
    retry and release, queue length, follow, the async twins."""

    capability = "derived operations"

    def test_publish_many_keeps_order(self, backend: Backend) -> None:
        stream = _name("s")
        ids = backend.publish_many(stream, [b"1", b"2", b"3"])
        assert len(ids) == 3
        assert [m.data for m in backend.read(stream).messages] == [b"1", b"2", b"3"]
        assert [m.id for m in backend.read(stream).messages] == ids
        later = backend.publish(stream, b"4")
        assert [m.id for m in backend.read(stream, ids[-1]).messages] == [later]
        assert backend.publish_many(stream, []) == []

    def test_append_stores_in_order_like_publish(self, backend: Backend) -> None:
        stream = _name("s")
        first = backend.publish(stream, b"1")
        backend.append(stream, b"2")
        backend.append(stream, b"3")
        last = backend.publish(stream, b"4")
        messages = backend.read(stream).messages
        assert [m.data for m in messages] == [b"1", b"2", b"3", b"4"]
        assert [m.id for m in messages][0::3] == [first, last]
        keys = [backend.id_key(m.id) for m in messages]
        assert keys == sorted(keys) and len(set(keys)) == 4
        assert backend.last_id(stream) == last

    def test_aappend_stores_in_order(self, backend: Backend) -> None:
        stream = _name("s")

        async def scenario() -> None:
            await backend.apublish(stream, b"1")
            await backend.aappend(stream, b"2")
            await backend.aappend(stream, b"3")

        asyncio.run(scenario())
        assert [m.data for m in backend.read(stream).messages] == [b"1", b"2", b"3"]

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
        assert backend.enqueue_many(queue, []) == []

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

    def test_ack_and_reserve_finishes_jobs_and_takes_the_next(self, backend: Backend) -> None:
        queue, other = _name("q"), _name("q")
        backend.enqueue_many(queue, [b"a", b"b", b"c", b"d", b"e"])
        acked, first = backend.ack_and_reserve([], queue, visibility_timeout=HOLD)
        assert acked == [] and [j.payload for j in first] == [b"a"]
        acked, batch = backend.ack_and_reserve(first, queue, count=2, visibility_timeout=HOLD)
        assert acked == [True] and [j.payload for j in batch] == [b"b", b"c"], "oldest first"
        assert all(j.attempts == 1 for j in batch) and batch[0].receipt != first[0].receipt
        # A stale reservation is not acked; the acks count even when no job comes.
        backend.enqueue(other, b"x")
        held = backend.reserve_many(other, 1, visibility_timeout=HOLD)
        acked, none = backend.ack_and_reserve(
            [*first, *batch, *held], _name("empty"), count=3, visibility_timeout=HOLD
        )
        assert acked == [False, True, True, True] and none == []
        # count=0 only acks.
        (fourth,) = backend.reserve_many(queue, 1, visibility_timeout=HOLD)
        acked, none = backend.ack_and_reserve([fourth], queue, count=0, visibility_timeout=HOLD)
        assert acked == [True] and none == []
        assert [j.payload for j in backend.browse(queue)] == [b"e"]
        assert backend.queue_length(other) == 0

    def test_jobs_reserved_together_lapse_and_come_back(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue_many(queue, [b"a", b"b"])
        _, jobs = backend.ack_and_reserve([], queue, count=2, visibility_timeout=0.2)
        assert [j.payload for j in jobs] == [b"a", b"b"]
        again: list[Job] = []

        def both_back() -> bool:  # once the batch's reservation lapsed
            again.extend(backend.reserve_many(queue, 2 - len(again), visibility_timeout=HOLD))
            return len(again) == 2

        wait_for(both_back, 10, "the jobs reserved together to come back")
        assert sorted(j.payload for j in again) == [b"a", b"b"]
        assert all(j.attempts == 2 for j in again)
        assert backend.ack_many(jobs) == 0, "lapsed reservations ack nothing"
        assert backend.ack_many(again) == 2

    def test_queue_length_counts_waiting_delayed_and_reserved_jobs(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue_many(queue, [b"a", b"b"])
        backend.enqueue(queue, b"later", delay=HOLD)
        assert backend.queue_length(queue) == 3
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None
        assert backend.queue_length(queue) == 3
        backend.ack(job)
        assert backend.queue_length(queue) == 2
        assert backend.queue_length(_name("q")) == 0

    def test_retry_waits_for_its_delay_and_counts_attempts(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"flaky")
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None
        # 2 s: the check below that the retry is not yet due comes within it on a busy machine.
        assert backend.retry(job, delay=2.0, error="boom") is True
        assert backend.retry(job, delay=0.0, error="again") is False, "no longer held"
        assert backend.reserve(queue, visibility_timeout=HOLD) is None
        again = _reserve_within(backend, queue, 10.0)
        assert again is not None
        assert again.payload == b"flaky"
        assert again.attempts == 2
        assert again.last_error == "boom"
        assert backend.queue_length(queue) == 1
        assert backend.retry(again, delay=0.0, error="boom twice") is True
        third = _reserve_within(backend, queue, 10.0)
        assert third is not None and third.attempts == 3 and third.last_error == "boom twice"
        assert backend.ack(third) is True
        assert backend.queue_length(queue) == 0

    def test_a_retried_job_that_lapses_counts_that_try_too(self, backend: Backend) -> None:
        queue = _name("q")
        backend.enqueue(queue, b"crashy")
        job = backend.reserve(queue, visibility_timeout=HOLD)
        assert job is not None
        assert backend.retry(job, delay=0.0, error="first") is True
        lapsing = _reserve_within(backend, queue, 10.0, vt=0.3)
        assert lapsing is not None and lapsing.attempts == 2
        taken_over = _reserve_within(backend, queue, 10.0)
        assert taken_over is not None
        assert taken_over.attempts == 3, "a reservation whose worker vanished counts"
        assert taken_over.last_error == "first"
        assert backend.ack(taken_over) is True

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
        assert again.attempts == 2, "a stopping worker's job keeps its try"
        assert backend.queue_length(queue) == 1
        assert backend.ack(again) is True

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
                if len([d for d in got if d != PROBE]) >= 3:
                    stop.set()

        thread = threading.Thread(target=follow)
        thread.start()
        started.wait(5)
        _until_followed(lambda: backend.publish(stream, PROBE), lambda: PROBE in got)
        for data in (b"a", b"b", b"c"):
            backend.publish(stream, data)
        thread.join(10)
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        assert got[0] == PROBE and [d for d in got if d != PROBE] == [b"a", b"b", b"c"]

    def _follow_from(self, backend: Backend, stream: str, after: str, then: bytes) -> list[Any]:
        """Follow ``stream`` from ``after`` until ``then`` (published once following) came."""
        stop = threading.Event()
        batches: list[Any] = []
        first = threading.Event()

        def follow() -> None:
            for batch in backend.follow(stream, after, stop=stop, poll=0.05):
                batches.append(batch)
                first.set()
                if any(m.data == then for m in batch.messages):
                    stop.set()

        thread = threading.Thread(target=follow)
        thread.start()
        try:
            assert first.wait(10), "the follower got nothing"
            backend.publish(stream, then)
            thread.join(10)
        finally:
            stop.set()
            thread.join(5)
        assert not thread.is_alive()
        return batches

    def test_a_follower_behind_the_retention_gets_a_reset_then_the_oldest_kept(self) -> None:
        backend = self.make_backend(stream_maxlen=5)
        try:
            stream = _name("s")
            ids = [backend.publish(stream, f"m{i}".encode()) for i in range(50)]
            kept = [m.data for m in backend.read(stream).messages]
            batches = self._follow_from(backend, stream, ids[0], b"new")
            assert batches[0].reset is True
            assert [m.data for b in batches for m in b.messages] == [*kept, b"new"]
            assert all(b.reset is False for b in batches[1:])
        finally:
            backend.close()

    def test_a_follower_from_an_id_the_stream_never_gave_starts_from_the_oldest_kept(
        self, backend: Backend
    ) -> None:
        stream = _name("s")
        ids = [backend.publish(stream, f"m{i}".encode()) for i in range(3)]
        batches = self._follow_from(backend, stream, self.unknown_id(ids[-1]), b"new")
        assert batches[0].reset is True
        assert [m.data for b in batches for m in b.messages] == [b"m0", b"m1", b"m2", b"new"]

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
                    if len([d for d in got if d != PROBE]) >= 2:
                        return

            # The stream exists before the follower starts (as in the sync test): a broker
            # that makes it on first use is not raced by the probes' publishes.
            await backend.apublish(stream, PROBE)
            task = asyncio.create_task(consume())
            # Probes until the follower has taken its starting position (it sees one).
            deadline = time.monotonic() + 10
            while PROBE not in got:
                assert time.monotonic() < deadline, "the follower never started"
                await backend.apublish(stream, PROBE)
                await asyncio.sleep(0.05)
            await backend.apublish(stream, b"x")
            await backend.apublish(stream, b"y")
            await asyncio.wait_for(task, 10)
            return got

        got = asyncio.run(scenario())
        assert got[0] == PROBE and [d for d in got if d != PROBE] == [b"x", b"y"]

    def test_afollow_from_an_id_resumes_after_it(self, backend: Backend) -> None:
        stream = _name("s")
        ids = [backend.publish(stream, f"m{i}".encode()) for i in range(3)]

        async def scenario() -> list[bytes]:
            got: list[bytes] = []
            async for batch in backend.afollow(stream, ids[0], poll=0.05):
                got.extend(m.data for m in batch.messages)
                if len(got) >= 2:
                    break
            return got

        assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [b"m1", b"m2"]

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

    def test_async_browse_and_release(self, backend: Backend) -> None:
        queue = _name("q")

        async def scenario() -> None:
            await backend.aenqueue_many(queue, [b"one", b"two"])
            assert [j.payload for j in await backend.abrowse(queue)] == [b"one", b"two"]
            job = await backend.areserve(queue, visibility_timeout=HOLD)
            assert job is not None and job.payload == b"one"
            assert await backend.arelease(job) is True
            assert await backend.arelease(job) is False
            payloads = []
            for _ in range(2):
                job = await backend.areserve(queue, visibility_timeout=HOLD, block=5)
                assert job is not None and job.attempts == 1
                payloads.append(job.payload)
                assert await backend.aack(job) is True
            assert sorted(payloads) == [b"one", b"two"]

        asyncio.run(scenario())
        assert backend.queue_length(queue) == 0


# -- optional capabilities -------------------------------------------------------------------


class _Optional(_Contract):
    """An optional capability: checked when the backend offers it, else its refusal is."""

    @staticmethod
    def offered(backend: Backend, capability: str) -> Any:
        """The backend as ``capability``; None after checking that it refuses it clearly."""
        if isinstance(backend, CAPABILITIES[capability]):
            return backend
        with pytest.raises(ConfigurationError) as refused:
            require(backend, capability, "this contract test")
        message = str(refused.value)
        assert capability in message and type(backend).__name__ in message
        return None


class ClaimsContract(_Optional):
    """The optional claims: keys set once (de-duplication, read marks)."""

    capability = "claims"

    def test_set_if_absent_claims_a_key_once_until_it_expires(self, backend: Backend) -> None:
        store: Claims | None = self.offered(backend, "claims")
        if store is None:
            return
        key = _name("k")
        assert store.kv_exists(key) is False
        assert store.kv_set_if_absent(key, b"1", ttl=HOLD) is True
        assert store.kv_exists(key) is True
        assert store.kv_set_if_absent(key, b"2", ttl=HOLD) is False
        short = _name("k")
        assert store.kv_set_if_absent(short, b"x", ttl=0.2) is True
        deadline = time.monotonic() + 10
        while store.kv_exists(short) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.kv_exists(short) is False
        assert store.kv_set_if_absent(short, b"y", ttl=HOLD) is True
        assert store.kv_exists(short) is True

    def test_a_deleted_claim_can_be_made_again(self, backend: Backend) -> None:
        store: Claims | None = self.offered(backend, "claims")
        if store is None:
            return
        key = _name("k")
        assert store.kv_delete(key) is False
        assert store.kv_set_if_absent(key, b"first") is True
        assert store.kv_delete(key) is True
        assert store.kv_exists(key) is False
        assert store.kv_delete(key) is False
        assert store.kv_set_if_absent(key, b"second") is True
        assert store.kv_exists(key) is True
        assert store.kv_exists(_name("k")) is False

    def test_concurrent_claims_of_one_key_have_one_winner(self, backend: Backend) -> None:
        store: Claims | None = self.offered(backend, "claims")
        if store is None:
            return
        key = _name("k")
        wins: list[bool] = []
        gate = threading.Barrier(4)

        def claim() -> None:
            gate.wait(10)
            wins.append(store.kv_set_if_absent(key, b"mine", ttl=HOLD))

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(wins) == [False, False, False, True]

    def test_a_worker_de_duplicates_with_claims_or_the_consumer_is_refused(self) -> None:
        from notifycore import Event, Notifications, Worker  # the contract sits above them

        backend = self.make_backend()
        notifications = Notifications(config={}, backend=backend, environ={})
        try:
            ran: list[str] = []
            hub = notifications.create_hub("contract")
            if not isinstance(backend, Claims):
                with pytest.raises(ConfigurationError, match="needs a backend that offers claims"):
                    hub.register_consumer(lambda e: None, name="once", mode="queued", dedupe=True)
                assert not hub.is_registered("once")
                return
            hub.register_consumer(
                lambda e: ran.append(e.event_id), name="once", mode="queued", dedupe=True
            )
            event = Event(None, "contract", "once only", "")
            notifications.send(event)
            notifications.send(event)
            worker = Worker(notifications)
            for _ in range(2):
                job = worker.reserve(block=10.0)
                assert job is not None
                worker.process(job)
            assert ran == [event.event_id]
        finally:
            notifications.close()


class KeyValueContract(_Optional):
    """The optional key-value store: claims whose values can be read and replaced."""

    capability = "key-value store"

    def test_set_get_and_delete(self, backend: Backend) -> None:
        store: KeyValueStore | None = self.offered(backend, "key-value store")
        if store is None:
            return
        key = _name("k")
        assert store.kv_get(key) is None
        value = "héllo ✓".encode() + bytes(range(256))
        store.kv_set(key, value)
        assert store.kv_get(key) == value
        assert store.kv_exists(key) is True
        store.kv_set(key, b"second")
        assert store.kv_get(key) == b"second"
        assert store.kv_set_if_absent(key, b"third") is False
        assert store.kv_get(key) == b"second"
        assert store.kv_delete(key) is True
        assert store.kv_get(key) is None
        assert store.kv_set_if_absent(key, b"fourth") is True
        assert store.kv_get(key) == b"fourth"

    def test_a_ttl_expires_a_set_value(self, backend: Backend) -> None:
        store: KeyValueStore | None = self.offered(backend, "key-value store")
        if store is None:
            return
        key = _name("k")
        store.kv_set(key, b"brief", ttl=0.2)
        assert store.kv_get(key) == b"brief"
        deadline = time.monotonic() + 10
        while store.kv_get(key) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.kv_get(key) is None
        assert store.kv_exists(key) is False
        assert store.kv_delete(key) is False
        store.kv_set(key, b"kept", ttl=HOLD)
        store.kv_set(key, b"for good")
        assert store.kv_get(key) == b"for good", "kv_set replaces the ttl too"


class CountersContract(_Optional):
    """The optional counters: a key-value store whose counts change atomically."""

    capability = "counters"

    def test_counts_go_up_and_down_and_read_back(self, backend: Backend) -> None:
        store: Counters | None = self.offered(backend, "counters")
        if store is None:
            return
        key = _name("c")
        assert store.kv_incr(key) == 1
        assert store.kv_incr(key, 5) == 6
        assert store.kv_incr(key, -10) == -4
        assert store.kv_get(key) == b"-4"
        assert store.kv_delete(key) is True
        assert store.kv_incr(key, 2) == 2

    def test_concurrent_counts_add_up(self, backend: Backend) -> None:
        store: Counters | None = self.offered(backend, "counters")
        if store is None:
            return
        key = _name("c")

        def count() -> None:
            for _ in range(50):
                store.kv_incr(key)
                store.kv_incr(key, 2)
                store.kv_incr(key, -1)

        threads = [threading.Thread(target=count) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert store.kv_get(key) == b"400"


class InboxesContract(_Optional):
    """The optional inboxes: per-user items, newest first, read state, an exact unread count."""

    capability = "inboxes"

    def test_items_list_newest_first_in_pages_and_are_added_once(self, backend: Backend) -> None:
        store: Inboxes | None = self.offered(backend, "inboxes")
        if store is None:
            return
        user = _name("u")
        assert store.inbox_list(user) == [] and store.inbox_unread(user) == 0
        seqs = []
        for n in range(7):
            change = store.inbox_add(user, f"e{n}", b'{"n":%d}' % n, max_items=100)
            assert change.changed == (f"e{n}",) and change.unread == n + 1
            seqs.append(change.seq)
        assert seqs == sorted(seqs) and len(set(seqs)) == 7
        again = store.inbox_add(user, "e3", b"other", max_items=100)
        assert again.changed == () and again.unread == 7 and again.seq == 0
        first = store.inbox_list(user, limit=3)
        assert [r.item_id for r in first] == ["e6", "e5", "e4"]
        assert all(r.state == "unread" for r in first)
        assert first[0].data == b'{"n":6}' and abs(first[0].added - time.time()) < 600
        second = store.inbox_list(user, before=first[-1].seq, limit=3)
        assert [r.item_id for r in second] == ["e3", "e2", "e1"]
        assert second[0].data == b'{"n":3}'  # the first data stays
        assert [r.item_id for r in store.inbox_list(user, before=second[-1].seq)] == ["e0"]
        assert store.inbox_list(user, before=seqs[0]) == []
        assert store.inbox_list(_name("u")) == []  # users are independent

    def test_read_all_read_and_archived_keep_the_count_exact(self, backend: Backend) -> None:
        store: Inboxes | None = self.offered(backend, "inboxes")
        if store is None:
            return
        user = _name("u")
        seqs = {f"e{n}": store.inbox_add(user, f"e{n}", b"x", max_items=100).seq for n in range(6)}
        change = store.inbox_mark_read(user, ["e1", "e2", "e1", "nope"])
        assert change.changed == ("e1", "e2") and change.unread == 4 and change.count == 2
        assert store.inbox_mark_read(user, ["e1"]).changed == ()
        change = store.inbox_archive(user, ["e2", "e3", "nope"])
        assert change.changed == ("e2", "e3") and change.unread == 3
        assert store.inbox_unread(user) == 3
        states = {r.item_id: r.state for r in store.inbox_get(user, ["e0", "e1", "e2", "e3", "x"])}
        assert states == {"e0": "unread", "e1": "read", "e2": "archived", "e3": "archived"}
        assert store.inbox_mark_read(user, ["e3"]).changed == ()  # archived stays archived
        assert [r.item_id for r in store.inbox_list(user)] == ["e5", "e4", "e1", "e0"]
        assert [r.item_id for r in store.inbox_list(user, archived=True)] == ["e3", "e2"]
        assert [r.state for r in store.inbox_list(user, archived=True)] == ["archived"] * 2
        change = store.inbox_mark_all_read(user, up_to=seqs["e4"])
        assert change.count == 2 and change.unread == 1
        assert store.inbox_get(user, ["e5"])[0].state == "unread"
        change = store.inbox_mark_all_read(user)
        assert change.count == 1 and change.unread == 0 and store.inbox_unread(user) == 0
        assert store.inbox_mark_all_read(_name("u")).unread == 0

    def test_retention_drops_the_oldest_and_their_unread_count(self, backend: Backend) -> None:
        store: Inboxes | None = self.offered(backend, "inboxes")
        if store is None:
            return
        user = _name("u")
        for n in range(5):
            store.inbox_add(user, f"e{n}", b"x", max_items=3)
        assert [r.item_id for r in store.inbox_list(user)] == ["e4", "e3", "e2"]
        assert store.inbox_unread(user) == 3
        store.inbox_mark_read(user, ["e2"])
        store.inbox_archive(user, ["e3"])
        store.inbox_add(user, "e5", b"x", max_items=3)  # e2 (read) goes
        assert store.inbox_get(user, ["e2"]) == []
        assert store.inbox_unread(user) == 2
        store.inbox_add(user, "e6", b"x", max_items=3)  # e3 (archived) goes
        assert store.inbox_list(user, archived=True) == []
        store.inbox_add(user, "e7", b"x", max_items=3)  # e4 (unread) goes
        assert store.inbox_unread(user) == 3
        # By age: an item older than max_age goes when the next one is added.
        aged = _name("u")
        store.inbox_add(aged, "old", b"x", max_items=100, max_age=3600)
        deadline = time.monotonic() + 30
        n = 0
        while store.inbox_get(aged, ["old"]) and time.monotonic() < deadline:
            n += 1
            store.inbox_add(aged, f"new{n}", b"x", max_items=100, max_age=0.2)
            time.sleep(0.05)
        assert store.inbox_get(aged, ["old"]) == []
        assert store.inbox_unread(aged) == len(store.inbox_list(aged, limit=1000))

    def test_an_item_that_is_not_bytes_is_refused_and_a_limit_below_one_keeps_one(
        self, backend: Backend
    ) -> None:
        store: Inboxes | None = self.offered(backend, "inboxes")
        if store is None:
            return
        user = _name("u")
        with pytest.raises(TypeError, match="an inbox item is bytes, not str"):
            store.inbox_add(user, "e0", "text", max_items=10)  # type: ignore[arg-type]
        assert store.inbox_list(user) == [] and store.inbox_unread(user) == 0
        for n in range(3):  # max_items 0 keeps the newest; max_age 0 is no age limit
            store.inbox_add(user, f"e{n}", b"x", max_items=0, max_age=0)
        assert [r.item_id for r in store.inbox_list(user)] == ["e2"]
        assert store.inbox_unread(user) == 1

    def test_concurrent_changes_keep_the_unread_count_exact(self, backend: Backend) -> None:
        store: Inboxes | None = self.offered(backend, "inboxes")
        if store is None:
            return
        user = _name("u")
        gate = threading.Barrier(4)

        def work(worker: int) -> None:
            gate.wait(10)
            for n in range(25):
                store.inbox_add(user, f"w{worker}-{n}", b"x", max_items=1000)
                if n % 3 == 0:
                    store.inbox_mark_read(user, [f"w{worker}-{n}", f"w{(worker + 1) % 4}-{n}"])
                if n % 5 == 0:
                    store.inbox_archive(user, [f"w{worker}-{n - 1}"])

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        listed = store.inbox_list(user, limit=1000)
        archived = store.inbox_list(user, archived=True, limit=1000)
        assert len(listed) + len(archived) == 100
        assert store.inbox_unread(user) == sum(r.state == "unread" for r in listed)


class BackendContract(
    StreamsContract,
    QueuesContract,
    DeadLettersContract,
    DerivedContract,
    ClaimsContract,
    KeyValueContract,
    CountersContract,
    InboxesContract,
):
    """Every capability: what ``notifycore.backends.base.Backend`` documents, and the optional
    ones (offered, or refused clearly)."""
