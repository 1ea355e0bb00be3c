"""One follower per stream per process, shared by every local subscriber."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from notifycore import fanout as fanout_module
from notifycore.backends.base import Backend, StreamMessage, StreamRead
from notifycore.backends.memory import MemoryBackend
from notifycore.backends.sqlite import SQLiteBackend
from notifycore.fanout import Fanout
from notifycore.testing import await_for, wait_for


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made: Backend = (
        MemoryBackend()
        if request.param == "memory"
        else SQLiteBackend(f"sqlite:///{tmp_path}/f.db")
    )
    yield made
    made.close()


def collect(subscription: Any, count: int, timeout: float = 10.0) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        batch = subscription.get(timeout)
        if batch is None:
            break
        got.extend(m.data for m in batch.messages)
    return got


def test_many_subscribers_share_one_follower(backend: Backend) -> None:
    fanout = Fanout(backend, poll=0.1)
    before = threading.active_count()
    subscribers = [fanout.subscribe("s") for _ in range(50)]
    assert fanout.streams == ["s"]
    # The memory backend hands each publish over itself (listen): no thread at all.
    threads = 0 if isinstance(backend, MemoryBackend) else 1
    assert threading.active_count() == before + threads, (
        "one thread for the stream at most, not one per subscriber"
    )
    for i in range(3):
        backend.publish("s", f"m{i}".encode())
    for subscription in subscribers:
        assert collect(subscription, 3) == [b"m0", b"m1", b"m2"]
    for subscription in subscribers:
        subscription.close()
    assert fanout.streams == []
    fanout.close()


def test_live_subscribers_do_not_get_the_past(backend: Backend) -> None:
    backend.publish("s", b"old")
    fanout = Fanout(backend, poll=0.1)
    subscription = fanout.subscribe("s")
    backend.publish("s", b"new")
    assert collect(subscription, 1) == [b"new"]
    assert subscription.get(0.2) is None
    fanout.close()


def test_resume_replays_then_continues_without_gap_or_duplicate(backend: Backend) -> None:
    fanout = Fanout(backend, poll=0.1)
    live = fanout.subscribe("s")  # keeps the stream's follower running
    ids = [backend.publish("s", f"m{i}".encode()) for i in range(5)]
    assert collect(live, 5) == [f"m{i}".encode() for i in range(5)]
    resumed = fanout.subscribe("s", after=ids[1])
    backend.publish("s", b"m5")
    assert collect(resumed, 4) == [b"m2", b"m3", b"m4", b"m5"]
    assert resumed.get(0.2) is None
    assert resumed.last_id is not None and backend.id_key(resumed.last_id) > backend.id_key(ids[-1])
    fanout.close()


def test_a_resume_ahead_of_a_lagging_follower_gets_nothing_twice(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay may read what the stream's follower has not handed out yet (a busy machine)."""
    gate = threading.Event()
    follow = backend.follow

    def lagging(*args: Any, **kwargs: Any) -> Iterator[StreamRead]:
        for batch in follow(*args, **kwargs):
            gate.wait(30)  # the follower hands nothing out until the test lets it
            yield batch

    monkeypatch.setattr(backend, "follow", lagging)
    base = backend.publish("s", b"old")
    fanout = Fanout(backend, poll=0.05)
    live = fanout.subscribe("s")
    backend.publish("s", b"m0")
    resumed = fanout.subscribe("s", after=base)  # replays m0 before the follower hands it out
    gate.set()
    backend.publish("s", b"m1")
    assert collect(resumed, 2) == [b"m0", b"m1"]
    assert collect(live, 2) == [b"m0", b"m1"]
    assert resumed.get(0.3) is None, "m0 came once"
    fanout.close()


def test_a_resume_older_than_the_retention_starts_with_a_reset() -> None:
    backend = MemoryBackend(stream_maxlen=3)
    ids = [backend.publish("s", f"m{i}".encode()) for i in range(10)]
    fanout = Fanout(backend, poll=0.1)
    subscription = fanout.subscribe("s", after=ids[0])
    first = subscription.get(5)
    assert first is not None and first.reset is True
    assert [m.data for m in first.messages] == [b"m7", b"m8", b"m9"]
    fanout.close()


def test_a_slow_subscriber_is_disconnected_and_never_delays_the_others(backend: Backend) -> None:
    fanout = Fanout(backend, poll=0.1, max_pending=5)
    slow = fanout.subscribe("s")
    fast = fanout.subscribe("s")
    got: list[bytes] = []
    done = threading.Event()

    def read_fast() -> None:
        got.extend(collect(fast, 50, timeout=10))
        done.set()

    reader = threading.Thread(target=read_fast)
    reader.start()
    for i in range(50):
        backend.publish("s", f"m{i}".encode())
        time.sleep(0.01)  # separate batches, as browsers see them
    reader.join(30)
    assert done.is_set() and got == [f"m{i}".encode() for i in range(50)]
    assert slow.closed_reason == "slow"
    drained = []
    while (batch := slow.get(0.1)) is not None:
        drained.extend(batch.messages)
    assert len(drained) <= 5, "it held at most max_pending messages, then it ended"
    fanout.close()


def test_async_subscribers(backend: Backend) -> None:
    fanout = Fanout(backend, poll=0.1)

    async def scenario() -> list[bytes]:
        subscription = fanout.subscribe("s")
        asyncio.get_running_loop().call_later(0.05, backend.publish, "s", b"hello")
        batch = await subscription.aget(timeout=10)
        assert batch is not None
        assert await subscription.aget(timeout=0.1) is None
        subscription.close()
        return [m.data for m in batch.messages]

    assert asyncio.run(scenario()) == [b"hello"]
    fanout.close()


def test_close_ends_every_subscription(backend: Backend) -> None:
    fanout = Fanout(backend, poll=0.1)
    subscription = fanout.subscribe("s")
    fanout.close()
    assert subscription.closed_reason == "shutdown"
    assert subscription.get(1) is None


def test_id_keys_order_ids() -> None:
    backend = MemoryBackend()
    assert backend.id_key("10") > backend.id_key("9")
    assert backend.id_key("1700000000000-2") > backend.id_key("1700000000000-1")
    batch = StreamRead([])
    assert batch.last_id is None


class _FeedByHand(MemoryBackend):
    """A backend whose followers never read: the test offers the feed's batches itself."""

    def follow(
        self, stream: str, after: str | None = None, *, stop: Any = None, poll: float = 1.0
    ) -> Any:
        if stop is not None:
            stop.wait()
        return iter(())


def test_a_batch_the_feed_read_before_the_replay_is_not_delivered_twice() -> None:
    # The race behind a duplicate seen in the demo's browser test: the stream's thread takes
    # its list of subscribers (the new one included) and is descheduled before offering a
    # batch; the replay then reads the same messages from the backend. Offered late, that
    # batch must add only what the replay did not have.
    backend = _FeedByHand()
    fanout = Fanout(backend, poll=0.1)
    first = backend.publish("s", b"m1")
    backend.publish("s", b"m2")
    backend.publish("s", b"m3")
    subscription = fanout.subscribe("s", after=first)
    assert collect(subscription, 2) == [b"m2", b"m3"]
    late = backend.read("s", first)  # what the feed had read: m2 and m3
    m4 = backend.publish("s", b"m4")
    subscription._offer(StreamRead([*late.messages, *backend.read("s", late.last_id).messages]))
    assert collect(subscription, 1) == [b"m4"]
    assert subscription.last_id == m4
    assert subscription.get(0.05) is None, "m2 and m3 came once"
    m5 = backend.publish("s", b"m5")
    subscription._offer(backend.read("s", m4))
    assert collect(subscription, 1) == [b"m5"], "live batches still flow after the check"
    assert subscription.last_id == m5
    subscription.close()
    fanout.close()


def test_wait_future_and_take_run_read_as_aget_run_does() -> None:
    # The streaming writer's two plain calls: a batch there now needs no future; else the
    # future is done by the next batch, by the end of the subscription, or by the timeout.
    backend = _FeedByHand()
    fanout = Fanout(backend, poll=0.1)
    subscription = fanout.subscribe("s")
    m1, m2 = (backend.publish("s", f"m{i}".encode()) for i in (1, 2))
    read = backend.read("s", None).messages

    async def scenario() -> list[Any]:
        seen: list[Any] = []
        subscription._offer(StreamRead(read[:1]))
        assert subscription.wait_future(30) is None, "a batch waits: nothing to await"
        seen.append(subscription.take_run())
        assert subscription.take_run() is None
        waiter = subscription.wait_future(30)
        assert waiter is not None and not waiter.done()
        subscription._feed._dispatch(StreamRead(read[1:]))  # from the group, next turn
        await asyncio.wait_for(waiter, 30)
        seen.append(subscription.take_run())
        timed = subscription.wait_future(0.01)
        assert timed is not None
        await asyncio.wait_for(timed, 30)  # nothing came: the timeout ends the wait
        seen.append(subscription.take_run())
        ending = subscription.wait_future(30)
        assert ending is not None
        subscription.close()
        await asyncio.wait_for(ending, 30)
        seen.append(subscription.take_run())
        assert subscription.wait_future(30) is None, "ended: nothing to wait for"
        return seen

    first, second, timed_out, ended = asyncio.run(scenario())
    assert [m.id for b in first for m in b.messages] == [m1]
    assert [m.id for b in second for m in b.messages] == [m2]
    assert timed_out is None and ended is None
    assert subscription.last_id == m2 and subscription.closed_reason == "closed"
    fanout.close()


def test_a_reader_behind_takes_every_waiting_batch_in_one_run() -> None:
    backend = _FeedByHand()
    fanout = Fanout(backend, poll=0.1)
    subscription = fanout.subscribe("s")
    m1, m2, m3 = (backend.publish("s", f"m{i}".encode()) for i in (1, 2, 3))
    read = backend.read("s", None).messages
    subscription._offer(StreamRead(read[:1]))
    subscription._offer(StreamRead(read[1:2]))
    subscription._offer(StreamRead(read[2:], reset=True))  # a reset starts the next run

    async def runs() -> list[list[StreamRead] | None]:
        return [await subscription.aget_run(1), await subscription.aget_run(1)]

    first, second = asyncio.run(runs())
    assert first is not None and [m.id for b in first for m in b.messages] == [m1, m2]
    assert second is not None and len(second) == 1 and second[0].reset
    assert [m.id for m in second[0].messages] == [m3]
    assert subscription.last_id == m3
    assert subscription._pending_messages == 0
    subscription.close()
    fanout.close()


@pytest.mark.parametrize("per_turn", [8, 32])
def test_readers_woken_a_few_per_turn_catch_up_in_one_write(
    per_turn: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While batches come faster than a group's readers are written to (here: always, after
    # the first), the readers are woken WAKE_PER_TURN at a time, so the loop takes in the
    # next event between turns; the readers not yet woken take both in one run.
    monkeypatch.setattr(fanout_module, "WAKE_PER_TURN", per_turn)
    monkeypatch.setattr(fanout_module, "PACE_WITHIN", 1e9)
    got = _two_batches_to(per_turn * 3 + 5)
    assert all([d for run in runs for d in run] == [b"m1", b"m2"] for runs in got), "each, once"
    assert sum(runs == [[b"m1", b"m2"]] for runs in got) > 0, "the late readers wrote both at once"
    assert sum(runs == [[b"m1"], [b"m2"]] for runs in got) >= per_turn, "the first turn wrote"


def test_a_batch_to_an_idle_group_wakes_every_reader_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fanout_module, "WAKE_PER_TURN", 8)
    monkeypatch.setattr(fanout_module, "PACE_WITHIN", 0.0)  # never busy
    got = _two_batches_to(8 * 3 + 5)
    assert all(runs == [[b"m1"], [b"m2"]] for runs in got), "each batch written at once"


class _Clock:
    """A loop stand-in for a group's pacing: its time is set by hand, its calls are kept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.soon: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        self.soon.append((callback, args))


class _Spied(fanout_module._Group):
    __slots__ = ("swept_all",)

    def wake_all(self, now: float) -> None:
        self.swept_all = True
        super().wake_all(now)


def test_a_long_sweep_does_not_make_the_events_after_it_look_like_a_burst() -> None:
    # Events every 150 ms whose readers are written in 40 ms are written at once: the idle
    # group wakes every reader in one turn (a sweep). A sweep that a pause made long (110
    # ms: a full garbage collection) used to be the measure of every later batch's pace:
    # 150 ms is within 1.5 x 110 ms, so the events after it were taken for a burst and
    # their readers woken 16 a turn, and, as such a wake-up was never timed, for good (the
    # benchmark's paced load at K = 1,000 ran more than half its events so).
    backend = _FeedByHand()
    fanout = Fanout(backend, poll=0.1)
    clock = _Clock()
    feed = fanout.subscribe("s")._feed
    group = _Spied(feed, cast(asyncio.AbstractEventLoop, clock))

    def batch_at(now: float, took: float) -> bool:
        """A batch comes at ``now`` and its readers' wake-up takes ``took`` seconds; True if
        the group woke them all at once."""
        clock.now, clock.soon, group.swept_all = now, [], False
        group.deliver()
        clock.now = now + took
        for callback, args in clock.soon:
            callback(*args)
        return group.swept_all

    assert batch_at(0.0, 0.040)
    assert batch_at(0.150, 0.110), "idle: the sweep is long because of a pause"
    assert batch_at(0.300, 0.040), "one long sweep does not make the usual pace a burst"
    assert batch_at(0.450, 0.110) and batch_at(0.600, 0.110), "two pauses in a row"
    assert not batch_at(0.750, 0.040), "within 1.5 x 110 ms: taken for a burst"
    assert batch_at(0.900, 0.040), "its wake-up was timed: the usual pace is seen again"
    clock.soon = []
    assert not batch_at(0.901, 0.040), "a batch within 1.5 sweeps of the last: a burst"
    fanout.close()


def _two_batches_to(count: int) -> list[list[list[bytes]]]:
    """What ``count`` async readers of one group took, run by run: m1, then m2 once the
    first readers wrote m1 (after a first batch m0 that every reader took alone)."""
    backend = _FeedByHand()
    fanout = Fanout(backend, poll=0.1)

    async def scenario() -> list[list[list[bytes]]]:
        subscriptions = [fanout.subscribe("s") for _ in range(count)]
        got: list[list[list[bytes]]] = [[] for _ in subscriptions]

        async def read(index: int) -> None:
            while sum(len(run) for run in got[index]) < 3:
                run = await subscriptions[index].aget_run(10)
                assert run is not None
                got[index].append([m.data for b in run for m in b.messages])

        async def waiting() -> None:
            await await_for(
                lambda: all(s._waiter is not None for s in subscriptions),
                30,
                "every reader to wait",
                interval=0,
            )

        readers = [asyncio.create_task(read(i)) for i in range(count)]
        await waiting()
        feed = subscriptions[0]._feed
        for i in range(3):
            backend.publish("s", f"m{i}".encode())
        messages = backend.read("s", None).messages
        feed._dispatch(StreamRead(messages[:1]))
        await await_for(lambda: all(got), 30, "every reader to write m0", interval=0)
        await waiting()  # every reader wrote m0
        feed._dispatch(StreamRead(messages[1:2]))
        await await_for(
            lambda: any(len(runs) > 1 for runs in got),
            30,
            "the first turn to write m1",
            interval=0,
        )
        feed._dispatch(StreamRead(messages[2:]))
        await asyncio.wait_for(asyncio.gather(*readers), 10)
        for subscription in subscriptions:
            subscription.close()
        return got

    try:
        got = asyncio.run(scenario())
    finally:
        fanout.close()
    assert all(runs[0] == [b"m0"] for runs in got)
    return [runs[1:] for runs in got]


def test_a_watched_subscription_calls_back_in_its_loop_and_is_read_with_take(
    backend: Backend,
) -> None:
    fanout = Fanout(backend, poll=0.1)

    async def scenario() -> tuple[list[bytes], str | None]:
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()
        threads: list[bool] = []

        def callback() -> None:
            threads.append(asyncio.get_running_loop() is loop)
            woken.set()

        subscription = fanout.subscribe("s")
        subscription.watch(callback)
        assert subscription.take() is None and not woken.is_set()
        await asyncio.to_thread(backend.publish, "s", b"hello")
        await asyncio.wait_for(woken.wait(), 10)
        batch = subscription.take()
        assert batch is not None
        assert subscription.take() is None
        woken.clear()
        fanout.close()  # from this thread: the end is a call back in the loop too
        await asyncio.wait_for(woken.wait(), 10)
        assert all(threads)
        return [m.data for m in batch.messages], subscription.closed_reason

    assert asyncio.run(scenario()) == ([b"hello"], "shutdown")


def test_watching_a_subscription_that_holds_batches_calls_back_at_once(backend: Backend) -> None:
    fanout = Fanout(backend, poll=0.1)
    backend.publish("s", b"one")

    async def scenario() -> list[bytes]:
        calls: list[int] = []
        subscription = fanout.subscribe("s", after="0")
        subscription.watch(lambda: calls.append(1))
        assert calls, "a replay waits already"
        subscription.watch(None)
        batch = subscription.take()
        assert batch is not None
        subscription.close()
        assert len(calls) == 1, "no call once unwatched"
        return [m.data for m in batch.messages]

    assert asyncio.run(scenario()) == [b"one"]
    fanout.close()


@pytest.mark.parametrize("busy", [False, True])
def test_a_watched_subscription_hears_of_every_batch_its_loop_group_delivers(
    busy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The group defers waking its asyncio readers (and paces them when busy); a watched
    # subscription has no reader waiting, so it must be called back for each batch anyway.
    monkeypatch.setattr(fanout_module, "PACE_WITHIN", 1e9 if busy else 0.0)
    backend = _FeedByHand()
    fanout = Fanout(backend, poll=0.1)

    async def scenario() -> list[bytes]:
        subscription = fanout.subscribe("s")
        calls: list[int] = []
        subscription.watch(lambda: calls.append(1))
        got: list[bytes] = []
        feed = subscription._feed
        for i in range(3):
            backend.publish("s", f"m{i}".encode())
        messages = backend.read("s", None).messages

        def called_since(before: int) -> Callable[[], bool]:
            return lambda: len(calls) > before

        for i in range(3):
            before = len(calls)
            feed._dispatch(StreamRead(messages[i : i + 1]))
            # The group's delivery runs at the loop's next turns.
            await await_for(
                called_since(before),
                30,
                f"a call back for batch {i}",
                interval=0,
            )
            while (batch := subscription.take()) is not None:
                got.extend(m.data for m in batch.messages)
        subscription.close()
        return got

    try:
        assert asyncio.run(scenario()) == [b"m0", b"m1", b"m2"]
    finally:
        fanout.close()


@pytest.mark.parametrize("error", [RuntimeError, asyncio.CancelledError])
@pytest.mark.parametrize("busy", [False, True])
def test_a_watch_callback_that_raises_keeps_its_group_delivering(
    busy: bool, error: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The group calls a watched subscription back in its own delivery: a callback that
    # raises must not stop the group there, leaving the members after it (and the readers
    # it would wake) without the batch. The error goes to the loop's exception handler,
    # as it does when the callback is called from another thread.
    monkeypatch.setattr(fanout_module, "PACE_WITHIN", 1e9 if busy else 0.0)
    backend = _FeedByHand()
    fanout = Fanout(backend, poll=0.1)

    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes], list[str]]:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(repr(context)))

        def broken() -> None:
            if error is asyncio.CancelledError:  # a BaseException: it got past the guard
                raise asyncio.CancelledError("an application's callback is broken")
            raise RuntimeError("an application's callback is broken")

        first = fanout.subscribe("s")
        first.watch(broken)
        calls: list[int] = []
        second = fanout.subscribe("s")
        second.watch(lambda: calls.append(1))
        reader = fanout.subscribe("s")
        read = asyncio.ensure_future(reader.aget_run(30))
        await await_for(lambda: reader._waiter is not None, 30, "the reader to wait", interval=0)
        backend.publish("s", b"m0")
        first._feed._dispatch(backend.read("s", None))
        await await_for(lambda: bool(calls) and read.done(), 30, "the batch past the error")
        batches = read.result()
        assert batches is not None
        taken = second.take()
        assert taken is not None
        kept = first.take()
        assert kept is not None, "the broken subscriber's batch is queued all the same"
        first.watch(None)  # else its end calls it (and it raises) again
        for subscription in (first, second, reader):
            subscription.close()
        return (
            [m.data for m in taken.messages],
            [m.data for b in batches for m in b.messages],
            [m.data for m in kept.messages],
            reported,
        )

    try:
        taken, read, kept, reported = asyncio.run(scenario())
    finally:
        fanout.close()
    assert taken == read == kept == [b"m0"]
    assert len(reported) == 1 and "an application's callback is broken" in reported[0]


def test_a_memory_stream_is_handed_over_by_its_publishers_in_order_without_a_thread() -> None:
    # Four threads publish at once while the stream's subscribers read: each subscriber gets
    # every message once, in id order, and no thread follows the stream.
    backend = MemoryBackend()
    fanout = Fanout(backend, poll=0.1)
    before = threading.active_count()
    subscriptions = [fanout.subscribe("s") for _ in range(3)]
    assert threading.active_count() == before, "no thread follows a memory stream"

    def publish(writer: int) -> None:
        for i in range(200):
            backend.publish("s", f"{writer}-{i}".encode())

    writers = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    expected = [m.id for m in backend.read("s", None).messages]
    assert len(expected) == 800
    for subscription in subscriptions:
        ids: list[str] = []
        while len(ids) < 800:
            batch = subscription.get(10)
            assert batch is not None, f"only {len(ids)} of 800 came"
            ids.extend(m.id for m in batch.messages)
        assert ids == expected, "every message once, in id order"
        subscription.close()
    assert fanout.streams == []
    assert backend.publish("s", b"after") and not backend._streams["s"].listeners
    fanout.close()


def test_a_publish_in_the_readers_loop_reaches_them_in_the_next_turn() -> None:
    # asend() on a web server publishes in the loop its streams are read from: the group is
    # handed the batch in that loop, without a wake-up through the loop's self-pipe.
    backend = MemoryBackend()
    fanout = Fanout(backend, poll=0.1)

    async def scenario() -> list[bytes]:
        loop = asyncio.get_running_loop()
        subscriptions = [fanout.subscribe("s") for _ in range(5)]
        readers = [asyncio.ensure_future(s.aget(10)) for s in subscriptions]
        await await_for(lambda: all(s._waiter is not None for s in subscriptions), 30, "waits")
        woken: list[Any] = []
        real = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            woken.append(args)
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign,assignment]
        try:
            backend.publish("s", b"here")
        finally:
            del loop.call_soon_threadsafe  # type: ignore[method-assign]
        batches = await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert woken == [], "no wake-up across threads"
        for subscription in subscriptions:
            subscription.close()
        return [m.data for b in batches if b is not None for m in b.messages]

    assert asyncio.run(scenario()) == [b"here"] * 5
    fanout.close()


def test_a_memory_subscription_whose_loop_is_gone_is_closed_by_the_next_publish() -> None:
    backend = MemoryBackend()
    fanout = Fanout(backend, poll=0.1)

    async def read_once() -> Any:
        subscription = fanout.subscribe("s")
        await subscription.aget(0.01)  # binds it to this loop, which then ends
        return subscription

    subscription = asyncio.run(read_once())
    backend.publish("s", b"nobody reads this")
    wait_for(lambda: subscription.closed, 30, "the subscription to be closed")
    wait_for(lambda: fanout.streams == [], 30, "the stream to be let go")
    backend.publish("s", b"and nothing listens any more")
    assert not backend._streams["s"].listeners
    fanout.close()


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.integers(0, 4), st.booleans()),
        st.tuples(st.just("take"), st.just(0), st.just(False)),
        st.tuples(st.just("run"), st.just(0), st.just(False)),
    ),
    max_size=40,
)


@given(ops=_OPS)
@example(ops=[("offer", 1, False), ("offer", 1, False), ("run", 0, False), ("offer", 1, False)])
@example(ops=[("offer", 1, False), ("offer", 1, True), ("offer", 2, False), ("run", 0, False)])
def test_a_subscription_hands_batches_over_in_order_however_they_queue(
    ops: list[tuple[str, int, bool]],
) -> None:
    # The oldest batch waits on its own, the later ones in a deque made only while more than
    # one waits: taken one by one (get) or as runs up to the next reset (aget_run), every
    # batch comes once and in order, and the slow-client limit counts what waits: a batch
    # that would take a reader with batches waiting past max_pending ends the subscription.
    limit = 6
    fanout = Fanout(_FeedByHand(), poll=0.1, max_pending=limit)
    subscription = fanout.subscribe("s")
    subscription._offer(StreamRead([]))  # the replay: nothing before
    assert subscription.get(0) is not None
    model: list[StreamRead] = []
    slow = False
    number = 0
    try:
        for op, size, reset in ops:
            if op == "offer":
                batch = StreamRead(
                    [StreamMessage(str(number + i), b"x") for i in range(size)], reset
                )
                number += size
                subscription._offer(batch)
                waiting = sum(len(b.messages) for b in model)
                if model and waiting + size > limit:
                    slow = True  # ended: this batch and every later one are dropped
                if not slow:
                    model.append(batch)
                assert subscription.closed_reason == ("slow" if slow else None)
                continue
            expected: list[StreamRead] = []
            if model:
                expected.append(model.pop(0))
                while op == "run" and model and not model[0].reset:
                    expected.append(model.pop(0))
            if op == "take":
                got = subscription.get(0)
                assert [got] == expected if expected else got is None
            else:
                with subscription._lock:
                    run = subscription._take_run()
                assert run == expected if expected else run is None
            assert subscription._pending_messages == sum(len(b.messages) for b in model)
            assert f"pending={len(model)} " in repr(subscription)
            ids = [m.id for b in expected for m in b.messages]
            if ids:
                assert subscription.last_id == ids[-1]
    finally:
        subscription.close()
        fanout.close()


def test_a_group_delivers_to_its_members_as_they_come_and_go() -> None:
    # The group keeps its list of members between batches: one who joins must get the next
    # batch; one who leaves must get nothing more, and must not be kept alive by the list.
    backend = MemoryBackend()
    fanout = Fanout(backend, poll=0.1)

    async def read(subscription: Any) -> list[bytes]:
        batch = await subscription.aget(10)
        return [m.data for m in batch.messages] if batch is not None else []

    async def publish_to(readers: list[Any], data: bytes) -> list[list[bytes]]:
        waiting = [asyncio.ensure_future(read(s)) for s in readers]
        await await_for(lambda: all(s._waiter is not None for s in readers), 30, "waits")
        backend.publish("s", data)
        return await asyncio.wait_for(asyncio.gather(*waiting), 10)

    async def scenario() -> None:
        first, second = fanout.subscribe("s"), fanout.subscribe("s")
        assert await publish_to([first, second], b"m1") == [[b"m1"]] * 2
        third = fanout.subscribe("s")
        got = await publish_to([first, second, third], b"m2")
        assert got == [[b"m2"]] * 3, "the one who joined got the next batch"
        first.close()
        assert await publish_to([second, third], b"m3") == [[b"m3"]] * 2
        assert first.get(0) is None, "the one who left got nothing more"
        (group,) = fanout._feeds["s"].groups.values()
        held = [s for s, _ in group.roll or ()]
        assert first not in held and second in held, "the group let go of the one who left"
        for subscription in (second, third):
            subscription.close()

    asyncio.run(scenario())
    fanout.close()
