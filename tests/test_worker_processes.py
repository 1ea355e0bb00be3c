"""Workers as separate processes on the SQLite backend: kills, concurrency, bad jobs.

Every wait is bounded; the worker processes are killed at the end whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from notifycore import Event, Notifications
from notifycore.backends.sqlite import SQLiteBackend
from notifycore.jobs import decode_job
from notifycore.testing import wait_for

APPS = Path(__file__).resolve().parent / "apps"
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


class Workers:
    """Starts worker processes on one SQLite file and cleans them up."""

    def __init__(self, directory: Path, **settings: str) -> None:
        self.directory = directory
        self.db = directory / "jobs.db"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
            "NOTIFYCORE_BACKEND": "sqlite",
            "NOTIFYCORE_BACKEND_URL": f"sqlite:///{self.db}",
            "NOTIFYCORE_RETRY_BACKOFF": "0.05",
            "WORKER_TEST_DIR": str(directory),
            "PYTHONPATH": str(APPS),
            **{f"NOTIFYCORE_{k}": v for k, v in settings.items()},
        }
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str, log: str | None = None) -> subprocess.Popen[str]:
        """A worker process; with ``log``, its standard error goes to a file read by :meth:`err`."""
        stderr: Any = subprocess.PIPE
        if log is not None:
            stderr = open(self.directory / f"{log}.err", "w")  # noqa: SIM115 - closed below
        try:
            process = subprocess.Popen(
                [NOTIFYCORE, "worker", "--app", "worker_app:notifications", *args],
                env=self.env,
                cwd=self.directory,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        finally:
            if log is not None:
                stderr.close()
        self.processes.append(process)
        return process

    def err(self, log: str) -> str:
        return (self.directory / f"{log}.err").read_text()

    def sender_for(self, consumer: str) -> Notifications:
        """A sender whose events get jobs for the one consumer ``consumer`` of the app."""
        n = Notifications(
            config={"BACKEND": "sqlite", "BACKEND_URL": f"sqlite:///{self.db}"}, environ={}
        )
        n.create_hub("Jobs").register_consumer(lambda e: None, name=consumer, mode="queued")
        return n

    def sender(self) -> Notifications:
        """A Notifications on the same file with the same queued consumers, to enqueue from."""
        n = Notifications(
            config={"BACKEND": "sqlite", "BACKEND_URL": f"sqlite:///{self.db}"}, environ={}
        )
        hub = n.create_hub("Jobs")
        hub.register_consumer(lambda e: None, name="plain", mode="queued")
        hub.register_consumer(lambda e: None, name="deduped", mode="queued", dedupe=True)
        return n

    def lines(self, name: str) -> list[str]:
        path = self.directory / f"{name}.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(**settings: str) -> Workers:
        w = Workers(tmp_path, **settings)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_all()


def test_worker_killed_mid_run_loses_nothing_and_dedupe_runs_each_job_once(
    workers: Callable[..., Workers],
) -> None:
    w = workers(VISIBILITY_TIMEOUT="2")
    sender = w.sender()
    events = [Event(None, "job", f"job {i}") for i in range(600)]
    for event in events:
        sender.send(event)
    queue_length = sender.backend.queue_length("notifycore")
    assert queue_length == 1200

    first = w.start("--concurrency", "2")
    wait_for(lambda: len(w.lines("deduped")) >= 150, 60, "the first worker to get going")
    (w.directory / "pause").touch()
    wait_for(
        lambda: len(list(w.directory.glob("paused-*"))) == 2,
        60,
        "both worker threads to stop inside a job",
    )
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    remaining = sender.backend.queue_length("notifycore")
    assert 0 < remaining < 1200, "the kill must land in the middle of the run"
    done_before = {line.split()[0] for line in w.lines("deduped")}
    # Jobs the killed worker ran but had not acked yet come back: the two its threads were
    # in, and those finished just before them whose acks waited for the next reservation.
    unacked = {
        spec.event.event_id
        for spec in (decode_job(job.payload) for job in sender.backend.browse("notifycore"))
        if spec.consumer == "deduped" and spec.event.event_id in done_before
    }
    assert len(unacked) >= 2, "the two jobs the threads were in are not acked"

    (w.directory / "pause").unlink()
    second = w.start("--concurrency", "2")
    wait_for(lambda: sender.backend.queue_length("notifycore") == 0, 120, "the queue to drain")
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err

    ids = {e.event_id for e in events}
    deduped = Counter(line.split()[0] for line in w.lines("deduped"))
    plain = Counter(line.split()[0] for line in w.lines("plain"))
    assert set(deduped) == ids, "every de-duplicated job was done"
    assert max(deduped.values()) == 1, "and none twice"
    assert set(plain) == ids, "every plain job was done (at least once)"
    # The jobs the killed worker had run came back and were recognised as done.
    assert f"{len(unacked)} duplicate" in err, err
    assert done_before, "the first worker did part of the work"
    assert sender.backend.dead_letters("notifycore") == []
    sender.close()


def test_two_workers_drain_one_queue_without_taking_a_job_twice(
    workers: Callable[..., Workers],
) -> None:
    w = workers(VISIBILITY_TIMEOUT="60")
    sender = w.sender()
    sender.get_hub("Jobs").deregister_consumer("deduped")
    events = [Event(None, "job", f"job {i}") for i in range(1200)]
    sender.send_many(events)
    assert sender.backend.queue_length("notifycore") == 1200
    # Both workers hold a job in each thread before any finishes, so both really drain.
    (w.directory / "gate-required").touch()
    one = w.start("--concurrency", "2", "--burst")
    two = w.start("--concurrency", "2", "--burst")
    wait_for(
        lambda: len(list(w.directory.glob("waiting-*"))) == 4, 60, "all four threads to hold a job"
    )
    (w.directory / "gate").touch()
    for process in (one, two):
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
    runs = [line.split() for line in w.lines("plain")]
    by_event = Counter(event_id for event_id, _ in runs)
    assert set(by_event) == {e.event_id for e in events}
    assert max(by_event.values()) == 1, "a job was run twice while its reservation held"
    pids = {pid for _, pid in runs}
    assert len(pids) == 2, "both workers took jobs"
    assert sender.backend.queue_length("notifycore") == 0
    sender.close()


def test_malformed_jobs_in_the_table_become_dead_letters_while_good_jobs_run(
    workers: Callable[..., Workers],
) -> None:
    w = workers()
    sender = w.sender()
    sender.get_hub("Jobs").deregister_consumer("deduped")
    good_before = Event(None, "job", "before")
    sender.send(good_before)
    db = sqlite3.connect(w.db)
    now = time.time()
    bad = [
        b"this is not json",
        b'{"v": 1, "hub": "Jobs", "consumer": "plain", "event": {"event_type": 7}}',
        b'{"v": 1, "hub": "Jobs", "consumer": "nobody", "event": {"event_type": "t"}}',
        b'{"v": 1, "hub": "NoSuchHub", "consumer": "plain", "event": {"event_type": "t"}}',
        b'{"v": 99}',
    ]
    with db:
        db.executemany(
            "INSERT INTO nc_jobs (queue, payload, visible_at, enqueued_at) VALUES (?, ?, ?, ?)",
            [("notifycore", payload, now, now) for payload in bad],
        )
    db.close()
    good_after = Event(None, "job", "after")
    sender.send(good_after)

    worker = w.start("--burst")
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert [line.split()[0] for line in w.lines("plain")] == [
        good_before.event_id,
        good_after.event_id,
    ]
    listed = subprocess.run(
        [NOTIFYCORE, "dead-letters", "list", "--json"],
        env=w.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    reasons = [letter["error"] for letter in letters]
    assert len(reasons) == 5
    assert "not valid JSON" in reasons[0]
    assert "event_type" in reasons[1]
    assert "no consumer named 'nobody'" in reasons[2]
    assert "no hub named 'NoSuchHub'" in reasons[3]
    assert "unsupported job version 99" in reasons[4]
    assert sender.backend.queue_length("notifycore") == 0
    sender.close()


def test_sigterm_finishes_the_job_in_flight_acks_it_and_exits_zero(
    workers: Callable[..., Workers], tmp_path: Path
) -> None:
    w = workers()
    sender = w.sender()
    hub = sender.get_hub("Jobs")
    hub.deregister_consumer("plain")
    hub.deregister_consumer("deduped")
    hub.register_consumer(lambda e: None, name="slow", mode="queued")
    first, second = Event(None, "job", "in flight"), Event(None, "job", "waiting")
    sender.send(first)
    sender.send(second)
    worker = w.start()
    wait_for(
        lambda: (tmp_path / f"started-{first.event_id}").exists(), 60, "the first job to start"
    )
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "SIGTERM: finishing the jobs in flight" in err
    assert [line.split()[0] for line in w.lines("slow")] == [first.event_id]
    assert not (tmp_path / f"started-{second.event_id}").exists(), "no job reserved after SIGTERM"
    # The finished job was acked; the other one is still there, never reserved.
    assert sender.backend.queue_length("notifycore") == 1
    job = sender.backend.reserve("notifycore", visibility_timeout=30)
    assert job is not None and job.attempts == 1
    assert second.event_id.encode() in job.payload
    sender.close()


def test_cli_worker_errors_are_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")}
    done = subprocess.run(
        [NOTIFYCORE, "worker", "--app", "no_such_module:notifications"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "notifycore: error: cannot import the app module 'no_such_module'"
    )
    assert len(done.stderr.strip().splitlines()) == 1


def test_sqlite_backend_file_is_what_the_cli_uses(workers: Callable[..., Workers]) -> None:
    w = workers()
    sender = w.sender()
    assert isinstance(sender.backend, SQLiteBackend)
    assert Path(sender.backend.path) == w.db
    sender.close()


# -- worker faults: a consumer that kills its worker, one that hangs, stopping ---------------


def _ended_or(process: subprocess.Popen[str], condition: Callable[[], bool]) -> bool:
    return process.poll() is not None or condition()


@pytest.mark.parametrize(
    ("title", "deaths"), [("crash", 3), ("crash after an error", 2)], ids=["exits", "raises-first"]
)
def test_a_job_that_kills_its_worker_is_dead_lettered_after_max_tries_deliveries(
    workers: Callable[..., Workers], title: str, deaths: int
) -> None:
    w = workers(VISIBILITY_TIMEOUT="1", MAX_TRIES="3")
    sender = w.sender_for("crash")
    poison = Event(None, "job", title)
    sender.send(poison)
    behind = [Event(None, "job", f"fine {i}") for i in range(3)]
    sender.send_many(behind)

    def dead() -> bool:
        return bool(sender.backend.dead_letters("notifycore"))

    exits: list[int] = []
    worker = w.start()
    while not dead():  # a supervisor: start a new worker whenever one dies
        wait_for(partial(_ended_or, worker, dead), 60, "a death or the dead letter")
        if worker.poll() is not None:
            _, err = worker.communicate(timeout=30)
            exits.append(worker.returncode)
            assert len(exits) <= deaths, f"the job killed {len(exits)} workers: {err}"
            worker = w.start()
    wait_for(
        lambda: {line.split()[0] for line in w.lines("crash-ok")} >= {e.event_id for e in behind},
        60,
        "the jobs behind the poison one",
    )
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert exits == [3] * deaths
    tries = [line.split()[0] for line in w.lines("crash-tries")]
    assert tries == [poison.event_id] * 3, "exactly MAX_TRIES deliveries ran the consumer"
    (letter,) = sender.backend.dead_letters("notifycore")
    assert poison.event_id.encode() in letter.payload
    assert letter.attempts == 3
    assert letter.error.startswith("worker died: try 3 of 3 never finished"), letter.error
    if deaths == 2:
        assert letter.error.endswith("; last error: ValueError: first try fails")
    assert "worker died" in err, "the worker logs the dead job"
    assert sorted(line.split()[0] for line in w.lines("crash-ok")) == sorted(
        e.event_id for e in behind
    )
    assert sender.backend.queue_length("notifycore") == 0
    sender.close()


def test_a_hanging_consumer_fails_its_try_and_the_stuck_worker_exits_to_be_restarted(
    workers: Callable[..., Workers],
) -> None:
    w = workers(JOB_TIMEOUT="1", VISIBILITY_TIMEOUT="60", MAX_TRIES="2")
    sender = w.sender_for("hang")
    job = Event(None, "job", "hangs")
    sender.send(job)
    timed_out = "consumer 'hang' of hub 'Jobs' timed out after 1 s"
    for tries in (1, 2):
        worker = w.start()
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 1, err
        assert timed_out in err
        assert "every worker thread is stuck in a consumer past its time limit" in err
        assert [line.split()[0] for line in w.lines("hang-started")] == [job.event_id] * tries
    (letter,) = sender.backend.dead_letters("notifycore")
    assert letter.attempts == 2
    assert letter.error == f"ConsumerTimeout: {timed_out}"
    assert sender.backend.queue_length("notifycore") == 0
    sender.close()


def test_sigterm_gives_a_job_still_running_after_the_grace_period_back_untried(
    workers: Callable[..., Workers],
) -> None:
    w = workers(JOB_TIMEOUT="300", VISIBILITY_TIMEOUT="600")
    sender = w.sender_for("hang")
    sender.send(Event(None, "job", "hangs"))
    worker = w.start("--grace", "0.5")
    wait_for(lambda: bool(w.lines("hang-started")), 60, "the job to start")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "SIGTERM: finishing the jobs in flight (at most 0.5 s)" in err
    assert "the grace period (0.5 s) is over: giving 1 job(s) in flight back to the queue" in err
    assert "jobs: 1 released" in err
    job = sender.backend.reserve("notifycore", visibility_timeout=30)
    assert job is not None, "the job is visible again at once"
    assert job.attempts == 1, "the interrupted try was not counted"
    sender.close()


def test_a_second_signal_stops_the_worker_at_once_and_gives_the_job_back(
    workers: Callable[..., Workers],
) -> None:
    w = workers(JOB_TIMEOUT="300", VISIBILITY_TIMEOUT="600")
    sender = w.sender_for("hang")
    sender.send(Event(None, "job", "hangs"))
    worker = w.start("--grace", "3600", log="worker")
    wait_for(lambda: bool(w.lines("hang-started")), 60, "the job to start")
    worker.send_signal(signal.SIGTERM)
    wait_for(
        lambda: "SIGTERM: finishing the jobs in flight" in w.err("worker"), 60, "the first signal"
    )
    worker.send_signal(signal.SIGINT)
    worker.communicate(timeout=60)  # far sooner than the hour of grace
    err = w.err("worker")
    assert worker.returncode == 0, err
    assert "SIGINT: stopping now: giving 1 job(s) in flight back to the queue" in err
    job = sender.backend.reserve("notifycore", visibility_timeout=30)
    assert job is not None and job.attempts == 1
    sender.close()
