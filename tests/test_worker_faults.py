"""Worker faults in one process: deliveries lost to dead workers, time limits, stopping.

The same faults with real worker processes and signals are in
``test_worker_processes.py`` (SQLite) and the Redis and RabbitMQ plugins' tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifycore import (
    ConfigurationError,
    ConsumerTimeout,
    Event,
    JobOutcome,
    Notifications,
    Worker,
    hookimpl,
)
from notifycore.plugins import get_plugins
from notifycore.testing import wait_for

Make = Callable[..., Notifications]


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of each test: consumers blocked on it (stuck threads) return then."""
    gate = threading.Event()
    yield gate
    gate.set()


def _lose_deliveries(n: Notifications, count: int) -> None:
    """Hand the queue's only job out ``count`` times to workers that never finish it."""
    ids: set[str] = set()

    def handed_out() -> bool:
        job = n.backend.reserve("notifycore", visibility_timeout=0.05)
        if job is not None:
            ids.add(job.id)
        return job is not None

    for _ in range(count):
        wait_for(handed_out, 30, "the job to be visible again")
    assert len(ids) == 1


def test_a_job_whose_deliveries_never_finished_is_dead_lettered_without_running(
    make_notifications: Make,
) -> None:
    n = make_notifications(MAX_TRIES=3)
    ran: list[str] = []
    hub = n.create_hub("H")
    hub.register_consumer(lambda e: ran.append(e.title), name="c", mode="queued")
    n.send(Event(None, "t", "doomed"))
    _lose_deliveries(n, 3)  # three workers died holding it
    n.send(Event(None, "t", "behind it"))

    worker = Worker(n, poll=0.05)
    wait_for(lambda: worker.run_once() is JobOutcome.DEAD, 30, "the lost job to be dead")
    (letter,) = n.backend.dead_letters("notifycore")
    assert letter.attempts == 3, "three tries, the delivery that found them used up is not one"
    assert letter.error.startswith("worker died: try 3 of 3 never finished")
    assert "last error" not in letter.error
    assert ran == ["behind it"], "the doomed job's consumer never ran on the fourth delivery"
    assert worker.drain() == 0


def test_a_dead_worker_try_after_a_failure_keeps_the_last_error_and_the_registration_limit(
    make_notifications: Make,
) -> None:
    n = make_notifications(MAX_TRIES=5, RETRY_BACKOFF=0.0)
    hub = n.create_hub("H")

    @hub.register_consumer(name="c", mode="queued", max_tries=2)
    def fails(e: Event) -> None:
        raise ValueError("first try fails")

    n.send(Event(None, "t"))
    worker = Worker(n)
    assert worker.run_once(block=5) is JobOutcome.RETRY
    _lose_deliveries(n, 1)  # the second try killed its worker
    wait_for(lambda: worker.run_once() is JobOutcome.DEAD, 30, "the job to be dead")
    (letter,) = n.backend.dead_letters("notifycore")
    assert letter.attempts == 2
    assert letter.error.startswith("worker died: try 2 of 2 never finished")
    assert letter.error.endswith("; last error: ValueError: first try fails")


def test_a_sync_consumer_past_its_timeout_fails_its_try_and_a_new_thread_goes_on(
    make_notifications: Make, release: threading.Event, request: pytest.FixtureRequest
) -> None:
    n = make_notifications(RETRY_BACKOFF=0.0)
    hub = n.create_hub("H")
    errors: list[BaseException] = []

    class Spy:
        @hookimpl
        def notifycore_consumer_error(
            self, hub: Any, consumer: str, event: Event, error: BaseException
        ) -> None:
            errors.append(error)

    spy = Spy()
    get_plugins().register(spy, name="timeout-spy")
    request.addfinalizer(lambda: get_plugins().unregister(spy))
    done: list[str] = []
    started: list[str] = []

    @hub.register_consumer(name="hangs", mode="queued", max_tries=2, timeout=0.2)
    def hangs(e: Event) -> None:
        if e.title == "hang":
            started.append(e.event_id)
            release.wait(600)  # never returns while the test runs
        done.append(e.title)

    hang = Event(None, "t", "hang")
    n.send(hang)
    worker = Worker(n, concurrency=3, poll=0.05).start()
    try:
        wait_for(
            lambda: bool(n.backend.dead_letters("notifycore")), 60, "the hanging job to be dead"
        )
        n.send(Event(None, "t", "after"))
        wait_for(lambda: "after" in done, 60, "a job after the hanging one")
        (letter,) = n.backend.dead_letters("notifycore")
        assert letter.attempts == 2
        assert letter.error == "ConsumerTimeout: consumer 'hangs' of hub 'H' timed out after 0.2 s"
        assert started == [hang.event_id] * 2, "each try ran once, then timed out"
        assert [type(e) for e in errors] == [ConsumerTimeout, ConsumerTimeout]
        assert worker.counts[JobOutcome.RETRY] == 1 and worker.counts[JobOutcome.DEAD] == 1
        assert len(worker.stuck_threads) == 2
        assert not worker.exhausted, "two stuck threads of three: it goes on with new ones"
        assert worker.running
    finally:
        worker.stop(grace=5)
    assert n.stats["failed"] == 2


def test_a_worker_whose_threads_are_all_stuck_gives_up(
    make_notifications: Make, release: threading.Event
) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    hub.register_consumer(lambda e: release.wait(600), name="hangs", mode="queued", timeout=0.2)
    n.send(Event(None, "t"))
    worker = Worker(n, concurrency=1, poll=0.05).start()
    try:
        wait_for(lambda: worker.exhausted, 60, "the worker to give up")
        wait_for(lambda: not worker.running, 60, "the worker to stop taking jobs")
        assert len(worker.stuck_threads) == 1
        n.send(Event(None, "t", "later"))
        assert n.backend.queue_length("notifycore") == 2, "the retried job and the new one wait"
    finally:
        worker.stop(grace=5)


def test_an_async_consumer_past_its_timeout_is_cancelled_and_no_thread_is_lost(
    make_notifications: Make,
) -> None:
    n = make_notifications(RETRY_BACKOFF=0.0, JOB_TIMEOUT=0.2)
    hub = n.create_hub("H")
    cancelled: list[str] = []

    @hub.register_consumer(name="slow", mode="queued", max_tries=2)
    async def slow(e: Event) -> None:
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            cancelled.append(e.event_id)
            raise

    event = Event(None, "t")
    n.send(event)
    worker = Worker(n, poll=0.05).start()
    try:
        wait_for(lambda: bool(n.backend.dead_letters("notifycore")), 60, "the slow job to be dead")
    finally:
        worker.stop(grace=5)
    (letter,) = n.backend.dead_letters("notifycore")
    assert letter.error == "ConsumerTimeout: consumer 'slow' of hub 'H' timed out after 0.2 s"
    assert cancelled == [event.event_id] * 2
    assert worker.stuck_threads == [] and not worker.exhausted


def test_stop_gives_a_job_still_running_at_the_deadline_back_untried(
    make_notifications: Make, release: threading.Event
) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    started = threading.Event()

    @hub.register_consumer(name="long", mode="queued")
    def long(e: Event) -> None:
        started.set()
        release.wait(600)

    n.send(Event(None, "t", "long"))
    worker = Worker(n, poll=0.05).start()
    wait_for(started.is_set, 60, "the job to start")
    assert worker.stop(grace=0.1) == 1
    assert worker.counts[JobOutcome.RELEASED] == 1
    assert not worker.running
    job = n.backend.reserve("notifycore", visibility_timeout=30)
    assert job is not None, "the job is visible again at once"
    assert job.attempts == 1, "the interrupted delivery did not use up a try"


def test_stop_lets_a_job_finish_within_the_grace_period(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    started, finish = threading.Event(), threading.Event()
    done: list[str] = []

    @hub.register_consumer(name="short", mode="queued")
    def short(e: Event) -> None:
        started.set()
        finish.wait(60)
        done.append(e.title)

    n.send(Event(None, "t", "short"))
    n.send(Event(None, "t", "waiting"))
    worker = Worker(n, poll=0.05).start()
    wait_for(started.is_set, 60, "the job to start")
    threading.Timer(0.2, finish.set).start()
    assert worker.stop(grace=120) == 0
    assert done == ["short"], "the job in flight finished; no new one was taken"
    assert worker.counts[JobOutcome.DONE] == 1
    assert n.backend.queue_length("notifycore") == 1


def test_time_limits_are_checked(make_notifications: Make) -> None:
    n = make_notifications(VISIBILITY_TIMEOUT=10.0, JOB_TIMEOUT=11.0)
    with pytest.raises(ConfigurationError, match=r"JOB_TIMEOUT \(11 s\) is longer than VISIB"):
        Worker(n)
    n = make_notifications(VISIBILITY_TIMEOUT=10.0)
    hub = n.create_hub("H")
    for bad in (0, -1, float("nan"), float("inf"), "5", True):
        with pytest.raises(ConfigurationError, match="timeout must be a positive number"):
            hub.register_consumer(lambda e: None, name="bad", mode="queued", timeout=bad)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="timeout needs mode='queued'"):
        hub.register_consumer(lambda e: None, name="inline", timeout=1)
    hub.register_consumer(lambda e: None, name="long", mode="queued", timeout=30)
    with pytest.raises(ConfigurationError, match="'long' of hub 'H' has a timeout of 30 s"):
        Worker(n)
    assert Worker(n, ["elsewhere"]).job_timeout == 10.0, "another queue's consumer is not checked"
    with pytest.raises(ConfigurationError, match="grace must be"):
        Worker(n, ["elsewhere"], grace=-1)
    with pytest.raises(ConfigurationError, match="JOB_TIMEOUT .* at least"):
        make_notifications(JOB_TIMEOUT=0)


def test_a_stopped_worker_starts_again(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    done: list[str] = []
    hub.register_consumer(lambda e: done.append(e.title), name="c", mode="queued")
    worker = Worker(n, concurrency=2, poll=0.05).start()
    n.send(Event(None, "t", "one"))
    wait_for(lambda: done == ["one"], 60, "the first job")
    assert worker.stop(grace=5) == 0
    assert not worker.running
    n.send(Event(None, "t", "two"))
    worker.start()
    try:
        wait_for(lambda: done == ["one", "two"], 60, "the job after the restart")
    finally:
        worker.stop(grace=5)
    assert worker.counts[JobOutcome.DONE] == 2
