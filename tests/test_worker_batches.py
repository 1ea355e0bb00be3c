"""Workers take fast jobs a few at a time and ack them with the next reservation.

What batching must keep (docs/workers.md, "Batches"): no job held by a worker
while another one runs long, prefetched jobs given back untried when a loop
ends, every finished job acked. On the memory and the SQLite backend (the
latter acks and reserves in one transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from notifycore import Event, JobOutcome, Notifications, Worker
from notifycore.backends.base import Job
from notifycore.jobs import decode_job
from notifycore.testing import wait_for

QUEUE = "notifycore"
Make = Callable[..., Notifications]


@pytest.fixture(params=["memory", "sqlite"])
def make(
    request: pytest.FixtureRequest, make_notifications: Make, tmp_path: Path
) -> Callable[..., Notifications]:
    def make_(**config: object) -> Notifications:
        if request.param == "sqlite":
            config.update(BACKEND="sqlite", BACKEND_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
        return make_notifications(**config)

    return make_


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of each test: a consumer blocked on it returns then."""
    gate = threading.Event()
    yield gate
    gate.set()


def _titles(jobs: list[Job]) -> list[str]:
    return [decode_job(job.payload).event.title for job in jobs]


def test_a_job_that_runs_long_holds_no_other_job(make: Make, release: threading.Event) -> None:
    n = make(VISIBILITY_TIMEOUT=60)
    hub = n.create_hub("H")
    ran: list[str] = []
    slow_started = threading.Event()

    @hub.register_consumer(name="c", mode="queued")
    def c(e: Event) -> None:
        if e.title == "slow":
            slow_started.set()
            release.wait(60)
        ran.append(e.title)

    titles = [f"before {i}" for i in range(3)] + ["slow"] + [f"after {i}" for i in range(30)]
    n.send_many(Event(None, "t", title) for title in titles)
    worker = Worker(n, poll=0.05).start()
    taken: list[Job] = []
    try:
        wait_for(slow_started.is_set, 30, "the slow job to start")

        def the_rest_is_free() -> bool:
            # Another worker can take every job not run yet; the finished ones are acked.
            taken.extend(n.backend.reserve_many(QUEUE, 40, visibility_timeout=60))
            ran_fast = [t for t in ran if t != "slow"]
            return len(ran_fast) + len(taken) == 33 and n.backend.queue_length(QUEUE) == 1 + len(
                taken
            )

        wait_for(the_rest_is_free, 20, "the jobs around the slow one to be acked or free")
        assert all(job.attempts == 1 for job in taken), "prefetched jobs go back untried"
        assert "slow" not in _titles(taken)
        release.set()
        wait_for(lambda: "slow" in ran, 30, "the slow job to end")
        wait_for(lambda: n.backend.queue_length(QUEUE) == len(taken), 30, "its ack")
    finally:
        release.set()
        worker.stop(grace=5)
    assert sorted(ran + _titles(taken)) == sorted(titles), "each job ran once"
    assert n.backend.ack_many(taken) == len(taken)
    assert worker.counts[JobOutcome.DONE] == len(ran)


def test_an_interrupted_drain_acks_what_finished_and_gives_back_what_never_started(
    make: Make,
) -> None:
    n = make(VISIBILITY_TIMEOUT=60)
    hub = n.create_hub("H")
    ran: list[str] = []

    @hub.register_consumer(name="c", mode="queued")
    def c(e: Event) -> None:
        ran.append(e.title)
        if e.title == "job 20":
            raise KeyboardInterrupt

    n.send_many(Event(None, "t", f"job {i}") for i in range(40))
    worker = Worker(n)
    with pytest.raises(KeyboardInterrupt):
        worker.drain()
    assert ran == [f"job {i}" for i in range(21)]
    assert worker.counts[JobOutcome.DONE] == 20
    # The 20 finished ones are acked; the one it was in stays reserved, like after a crash.
    assert n.backend.queue_length(QUEUE) == 20
    back = n.backend.reserve_many(QUEUE, 40, visibility_timeout=60)
    assert sorted(_titles(back)) == sorted(f"job {i}" for i in range(21, 40)), "at once"
    assert all(job.attempts == 1 for job in back), "and untried"


def test_drain_takes_no_more_than_max_jobs(make: Make) -> None:
    n = make()
    hub = n.create_hub("H")
    ran: list[str] = []
    hub.register_consumer(lambda e: ran.append(e.title), name="c", mode="queued")
    n.send_many(Event(None, "t", f"job {i}") for i in range(50))
    worker = Worker(n)
    assert worker.drain(max_jobs=7) == 7
    assert worker.drain(max_jobs=30) == 30
    assert ran == [f"job {i}" for i in range(37)]
    back = n.backend.reserve_many(QUEUE, 50, visibility_timeout=60)
    assert sorted(_titles(back)) == sorted(f"job {i}" for i in range(37, 50))
    assert all(job.attempts == 1 for job in back)


def test_a_job_tried_before_starts_only_once_the_jobs_before_it_are_acked(make: Make) -> None:
    # Such a job may crash its worker: nothing that finished before it may run again then.
    n = make(RETRY_BACKOFF=0.0)
    hub = n.create_hub("H")
    ran: list[str] = []
    seen: list[tuple[int, int]] = []

    @hub.register_consumer(name="c", mode="queued")
    def c(e: Event) -> None:
        if e.title == "again":
            if "again" not in ran:
                ran.append(e.title)
                raise ValueError("first try fails")
            # Waiting: this job and those not run yet; nothing that finished.
            seen.append((n.backend.queue_length(QUEUE), 1 + 10 - (len(ran) - 1)))
        ran.append(e.title)

    n.send(Event(None, "t", "again"))
    n.send_many(Event(None, "t", f"job {i}") for i in range(10))
    worker = Worker(n)
    assert worker.drain() == 12
    assert ran.count("again") == 2 and len(seen) == 1
    ((waiting, expected),) = seen
    assert waiting == expected
    assert n.backend.queue_length(QUEUE) == 0


def test_a_backend_sets_how_many_jobs_one_reservation_takes(make: Make) -> None:
    # SQLite takes up to 128 fast jobs at a time (a local transaction); a backend that says
    # nothing, 32; a worker never asks for more than the backend's batch_max.
    n = make()
    n.create_hub("Chat").register_consumer(lambda e: None, name="fast", mode="queued")
    backend = n.backend
    default = getattr(type(backend), "batch_max", 32)
    assert default == (128 if type(backend).__name__ == "SQLiteBackend" else 32)
    asked: list[int] = []
    ack_and_reserve = backend.ack_and_reserve

    def counted(
        done: Sequence[Job], queue: str, *, count: int = 1, visibility_timeout: float
    ) -> tuple[list[bool], list[Job]]:
        asked.append(count)
        return ack_and_reserve(done, queue, count=count, visibility_timeout=visibility_timeout)

    backend.ack_and_reserve = counted  # type: ignore[method-assign]
    backend.batch_max = 5  # type: ignore[attr-defined]
    n.send_many(Event(None, "t", f"job {i}") for i in range(60))
    assert Worker(n).drain() == 60
    assert asked and max(asked) <= 5
    assert n.backend.queue_length(QUEUE) == 0
