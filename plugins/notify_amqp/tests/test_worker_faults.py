"""Worker faults on a real rabbitmq-server: a job that kills its worker, a stop mid-job.

RabbitMQ hands a dead worker's unacked job out again at once (its connection
closed); the quorum queue's ``x-delivery-count`` is how those deliveries count.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from notifycore import Event, Notifications
from notifycore.testing import wait_for

APPS = Path(__file__).resolve().parent / "apps"
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


class Setup:
    """Worker processes and a sender on one RabbitMQ server under a fresh prefix."""

    def __init__(self, rabbit_server: Any, directory: Path, consumer: str, **settings: str):
        prefix = f"faults-{uuid.uuid4().hex[:6]}."
        self.directory = directory
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
            "NOTIFYCORE_BACKEND": "amqp",
            "NOTIFYCORE_AMQP_URL": rabbit_server.url,
            "NOTIFYCORE_AMQP_PREFIX": prefix,
            "NOTIFYCORE_RETRY_BACKOFF": "0.1",
            "WORKER_TEST_DIR": str(directory),
            "PYTHONPATH": str(APPS),
            **{f"NOTIFYCORE_{k}": v for k, v in settings.items()},
        }
        self.sender = Notifications(
            config={"BACKEND": "amqp", "AMQP_URL": rabbit_server.url, "AMQP_PREFIX": prefix},
            environ={},
        )
        self.sender.create_hub("Jobs").register_consumer(
            lambda e: None, name=consumer, mode="queued"
        )
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [NOTIFYCORE, "worker", "--app", "amqp_faults_app", *args],
            env=self.env,
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def ids(self, name: str) -> list[str]:
        path = self.directory / f"{name}.log"
        return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)
        self.sender.close()


def _ended_or(process: subprocess.Popen[str], condition: Any) -> bool:
    return process.poll() is not None or bool(condition())


def test_a_job_that_kills_its_worker_is_dead_lettered_after_max_tries_deliveries(
    rabbit_server: Any, tmp_path: Path
) -> None:
    setup = Setup(rabbit_server, tmp_path, "crash", MAX_TRIES="3")
    try:
        sender = setup.sender
        poison = Event(None, "job", "crash")
        sender.send(poison)
        behind = [Event(None, "job", f"fine {i}") for i in range(3)]
        sender.send_many(behind)

        def dead() -> bool:
            return bool(sender.backend.dead_letters("notifycore"))

        exits: list[int] = []
        worker = setup.start()
        while not dead():  # a supervisor: start a new worker whenever one dies
            wait_for(partial(_ended_or, worker, dead), 60, "a death or the dead letter")
            if worker.poll() is not None:
                _, err = worker.communicate(timeout=30)
                exits.append(worker.returncode)
                assert len(exits) <= 3, f"the job killed {len(exits)} workers: {err}"
                worker = setup.start()
        # On RabbitMQ the returned job went back to the head of the queue, before these.
        wait_for(
            lambda: set(setup.ids("crash-ok")) >= {e.event_id for e in behind},
            60,
            "the jobs behind the poison one",
        )
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert exits == [3, 3, 3]
        assert setup.ids("crash-tries") == [poison.event_id] * 3
        (letter,) = sender.backend.dead_letters("notifycore")
        assert poison.event_id.encode() in letter.payload
        assert letter.attempts == 3
        assert letter.error.startswith("worker died: try 3 of 3 never finished"), letter.error
        assert sorted(setup.ids("crash-ok")) == sorted(e.event_id for e in behind)
        assert sender.backend.queue_length("notifycore") == 0
    finally:
        setup.close()


def test_sigterm_gives_a_job_still_running_after_the_grace_period_back_untried(
    rabbit_server: Any, tmp_path: Path
) -> None:
    setup = Setup(rabbit_server, tmp_path, "hang", JOB_TIMEOUT="300", VISIBILITY_TIMEOUT="600")
    try:
        sender = setup.sender
        event = Event(None, "job", "hangs")
        sender.send(event)
        worker = setup.start("--grace", "0.5")
        wait_for(lambda: bool(setup.ids("hang-started")), 60, "the job to start")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert "giving 1 job(s) in flight back to the queue" in err
        assert "jobs: 1 released" in err
        job = sender.backend.reserve("notifycore", visibility_timeout=30)
        assert job is not None, "the job is visible again at once"
        assert event.event_id.encode() in job.payload
        assert job.attempts == 1, "the interrupted try was not counted"
        assert sender.backend.ack(job)
    finally:
        setup.close()
