"""A frozen worker (SIGSTOP: a paused VM, a half-open connection) loses its jobs to the others.

RabbitMQ takes a job back from a process that stopped answering through AMQP
heartbeats: the connection of a silent process is closed after two to three
intervals. (Its consumer timeout cannot do that on RabbitMQ 3.10: it closes the
channel, but gives the deliveries back only once the client confirms the close,
which a frozen process never does; it acts on live processes only.) A process
that is alive keeps its jobs and its connection while it runs a long consumer
or waits for a job: its keeper thread sends the heartbeats and acks what its
stream tails saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notify_amqp.backend import AmqpBackend
from notify_amqp.testing import RabbitServer
from notifycore import Event, Notifications
from notifycore.backends.base import Job
from notifycore.testing import wait_for

APPS = Path(__file__).resolve().parent / "apps"
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


def _env(**extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "PYTHONPATH": str(APPS),
        **extra,
    }


class Holder:
    """A process holding one job of queue ``jobs`` (see apps/amqp_holder.py)."""

    def __init__(self, url: str, prefix: str, heartbeat: int, mode: str, folder: Path) -> None:
        folder.mkdir()
        self.folder = folder
        script = str(APPS / "amqp_holder.py")
        self.process = subprocess.Popen(
            [sys.executable, script, url, prefix, str(heartbeat), mode, str(folder)],
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __repr__(self) -> str:
        return f"<Holder {self.folder.name}>"

    def held(self) -> str:
        wait_for(
            lambda: (self.folder / "held").exists() or self.process.poll() is not None,
            90,
            f"{self} to reserve its job",
        )
        assert (self.folder / "held").exists(), self._failure()
        return (self.folder / "held").read_text()

    def go_on(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> list[bool]:
        wait_for(
            lambda: (self.folder / "result").exists() or self.process.poll() is not None,
            120,
            f"{self} to ack",
        )
        assert (self.folder / "result").exists(), self._failure()
        acked: list[bool] = json.loads((self.folder / "result").read_text())["acked"]
        return acked

    def _failure(self) -> str:
        self.process.kill()
        _, err = self.process.communicate(timeout=30)
        return f"{self} failed: {err[-2000:]}"

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.communicate(timeout=30)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.end()


def _taken(backend: AmqpBackend, queue: str) -> Job | None:
    return backend.reserve(queue, visibility_timeout=600, block=0.5)


def _wait_for_job(backend: AmqpBackend, queue: str, what: str, seconds: float = 90) -> Job:
    got: list[Job] = []

    def take() -> bool:
        job = _taken(backend, queue)
        if job is not None:
            got.append(job)
        return bool(got)

    wait_for(take, seconds, what)
    return got[0]


def test_a_frozen_worker_loses_its_job_and_cannot_ack_it_while_live_ones_keep_theirs(
    rabbit_server: Any, tmp_path: Path, holders: list[Holder]
) -> None:
    prefix = f"frozen-{uuid.uuid4().hex[:6]}."
    other = AmqpBackend(rabbit_server.url, prefix=prefix)
    try:
        other.enqueue_many("jobs", [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'])
        # Two live holders with short heartbeats: one busy in a "consumer" (not touching its
        # connection), one blocked in a reserve that holds its connection all along.
        busy = Holder(rabbit_server.url, prefix, 2, "busy", tmp_path / "busy")
        waiting = Holder(rabbit_server.url, prefix, 2, "waiting", tmp_path / "waiting")
        holders += [busy, waiting]
        kept = {busy.held(), waiting.held()}
        # Then one that freezes, with longer heartbeats: when RabbitMQ has given up on it
        # (two to three of its 4 s intervals), a holder silent since before would have been
        # given up too (two to three 2 s intervals) — unless its heartbeats went on.
        frozen = Holder(rabbit_server.url, prefix, 4, "busy", tmp_path / "frozen")
        holders.append(frozen)
        lost = frozen.held()
        frozen.process.send_signal(signal.SIGSTOP)

        job = _wait_for_job(other, "jobs", "RabbitMQ to give the frozen worker's job to another")
        assert job.id == lost
        assert job.attempts == 2, "the frozen worker's delivery counts"

        other.enqueue("idle", b'{"wake": true}')  # ends the waiting holder's long reserve
        busy.go_on()
        assert waiting.result() == [True, True], "a worker waiting for a job kept its job"
        assert busy.result() == [True], "a worker busy in a consumer kept its job"

        frozen.process.send_signal(signal.SIGCONT)
        frozen.go_on()
        assert frozen.result() == [False], "the frozen worker cannot ack the job it lost"
        assert other.ack(job) is True, "the job's new owner acks it"
        assert lost not in kept
        # Each job was acked once; none is left, nor handed out a third time.
        assert other.reserve("jobs", visibility_timeout=600, block=1.0) is None
        assert other.queue_length("jobs") == 0
        assert other.dead_letters("jobs") == []
    finally:
        other.close()


def _lines(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(p[0], int(p[1])) for p in (line.split() for line in path.read_text().splitlines())]


def test_a_frozen_notifycore_worker_gives_its_job_to_another_worker(
    rabbit_server: Any, tmp_path: Path
) -> None:
    prefix = f"frozencli-{uuid.uuid4().hex[:6]}."
    env = _env(
        NOTIFYCORE_BACKEND="amqp",
        NOTIFYCORE_AMQP_URL=rabbit_server.url,
        NOTIFYCORE_AMQP_PREFIX=prefix,
        NOTIFYCORE_AMQP_HEARTBEAT="2",
        WORKER_TEST_DIR=str(tmp_path),
    )
    sender = Notifications(
        config={"BACKEND": "amqp", "AMQP_URL": rabbit_server.url, "AMQP_PREFIX": prefix},
        environ={},
    )
    sender.create_hub("Jobs").register_consumer(lambda e: None, name="work", mode="queued")
    hold = Event(None, "job", "hold")
    sender.send(hold)
    command = [NOTIFYCORE, "worker", "--app", "amqp_app"]
    workers: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        worker = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        workers.append(worker)
        return worker

    done = tmp_path / "done.log"
    try:
        first = start()
        wait_for(
            lambda: (tmp_path / "hold-tried").exists(), 90, "the first worker to start the job"
        )
        first.send_signal(signal.SIGSTOP)
        second = start()
        wait_for(
            lambda: (hold.event_id, second.pid) in _lines(done),
            90,
            "the second worker to do the frozen worker's job",
        )
        (tmp_path / "hold-release").touch()
        first.send_signal(signal.SIGCONT)
        # The first worker finishes the consumer it was frozen in; its ack is refused.
        wait_for(
            lambda: (hold.event_id, first.pid) in _lines(done),
            90,
            "the first worker to finish its consumer",
        )
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            _, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGCONT)
                worker.kill()
                worker.communicate(timeout=30)
    # At least once: the frozen worker's job ran again elsewhere, and only there.
    assert sorted(pid for job, pid in _lines(done) if job == hold.event_id) == sorted(
        [first.pid, second.pid]
    )
    assert sender.backend.queue_length("notifycore") == 0
    assert sender.backend.reserve("notifycore", visibility_timeout=60) is None
    assert sender.backend.dead_letters("notifycore") == []
    sender.close()


# -- RabbitMQ's consumer timeout, on a node that checks it every 0.2 s ----------------------------


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    try:
        server = RabbitServer(
            tmp_path_factory.mktemp("rabbitmq-strict"), consumer_timeout=3.0, timeout_check=0.2
        )
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.shutdown()


def test_a_live_process_past_the_consumer_timeout_loses_that_job_and_goes_on(
    strict_server: RabbitServer,
) -> None:
    prefix = f"ctlive-{uuid.uuid4().hex[:6]}."
    holder = AmqpBackend(strict_server.url, prefix=prefix)
    publisher = AmqpBackend(strict_server.url, prefix=prefix)
    other = AmqpBackend(strict_server.url, prefix=prefix)
    try:
        publisher.publish("s", b"one")  # its tail consumer now sees every message of "s"
        link = next(iter(publisher._links.values()))
        connection = link.conn
        other.publish("s", b"two")  # delivered to the publisher's tail while it is idle
        holder.enqueue("jobs", b"{}")
        job = holder.reserve("jobs", visibility_timeout=600)
        assert job is not None
        taken = _wait_for_job(other, "jobs", "the consumer timeout to give the job back")
        assert taken.id == job.id
        # The holder learns its job was taken back: no false success, no error.
        assert holder.ack(job) is False
        assert other.ack(taken) is True
        holder.enqueue("jobs", b'{"next": true}')
        again = holder.reserve("jobs", visibility_timeout=600, block=10)
        assert again is not None and holder.ack(again) is True, "the holder goes on"
        # The idle publisher's tail acked what it saw: its connection outlived the timeout.
        three = publisher.publish("s", b"three")
        assert link.conn is connection and link.conn is not None
        assert [m.data for m in publisher.read("s").messages] == [b"one", b"two", b"three"]
        assert publisher.last_id("s") == three
    finally:
        holder.close()
        publisher.close()
        other.close()


def test_a_quiet_follower_acks_what_it_received_before_the_consumer_timeout(
    strict_server: RabbitServer, states: list[str]
) -> None:
    """A follower acks its deliveries together, not one by one; when its stream goes quiet
    it acks what it holds, so RabbitMQ's consumer timeout never closes its channel."""
    prefix = f"ctfollow-{uuid.uuid4().hex[:6]}."
    publisher = AmqpBackend(strict_server.url, prefix=prefix)
    follower = AmqpBackend(strict_server.url, prefix=prefix)
    holder = AmqpBackend(strict_server.url, prefix=prefix)
    other = AmqpBackend(strict_server.url, prefix=prefix)
    stop = threading.Event()
    got: list[bytes] = []

    def follow(after: str) -> None:
        for batch in follower.follow("s", after, stop=stop, poll=0.2):
            got.extend(m.data for m in batch.messages)

    try:
        thread = threading.Thread(target=follow, args=(publisher.publish("s", b"zero"),))
        thread.start()
        publisher.publish("s", b"one")
        wait_for(lambda: got == [b"one"], 30, "the follower to receive a message")
        # A job reserved after that delivery and held past the timeout: once RabbitMQ gave it
        # back, it has looked at the follower's delivery too.
        holder.enqueue("jobs", b"{}")
        job = holder.reserve("jobs", visibility_timeout=600)
        assert job is not None
        taken = _wait_for_job(other, "jobs", "the consumer timeout to give the job back")
        assert taken.id == job.id and other.ack(taken)
        publisher.publish("s", b"two")
        wait_for(lambda: got == [b"one", b"two"], 30, "the follower to receive the next one")
        assert "disconnected" not in states, "the follower's channel outlived the timeout"
    finally:
        stop.set()
        for backend in (publisher, follower, holder, other):
            backend.close()
