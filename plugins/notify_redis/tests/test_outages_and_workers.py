"""notify-redis against a real redis-server: outages, restarts and killed workers."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from redis_helpers import (
    check_a_worker_killed_mid_job_loses_nothing,
    ids_in,
    start_worker,
    worker_env,
)

from notify_redis.backend import RedisBackend
from notify_redis.testing import RedisServer
from notifycore import BackendUnavailable, Event, Notifications, hookimpl
from notifycore.plugins import get_plugins
from notifycore.testing import wait_for


def test_backend_by_name_with_redis_url(redis_server: Any) -> None:
    n = Notifications(config={"BACKEND": "redis", "REDIS_URL": redis_server.url}, environ={})
    try:
        assert isinstance(n.backend, RedisBackend)
        assert n.backend.url == redis_server.url
    finally:
        n.close()


def test_send_fails_clearly_when_redis_is_unreachable() -> None:
    with socketless_port() as port:
        url = f"redis://:s3cret@127.0.0.1:{port}/0"
        n = Notifications(
            config={"BACKEND": "redis", "REDIS_URL": url, "REDIS_RETRIES": 2}, environ={}
        )
        hub = n.create_hub("H")
        hub.register_consumer(lambda e: None, name="mail", mode="queued")
        with pytest.raises(BackendUnavailable) as info:
            n.send(Event(None, "t"))
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message and "after 2 retries" in message
        assert "s3cret" not in message, "the password must never be shown"
        n.close()


class socketless_port:
    """A loopback port where nothing listens (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def test_follower_survives_a_redis_restart_and_misses_nothing(redis_server: Any) -> None:
    states: list[str] = []

    class StateSpy:
        @hookimpl
        def notifycore_backend_state(self, backend: Any, state: str, error: Any) -> None:
            states.append(state)

    get_plugins().register(StateSpy(), name="state-spy")
    prefix = f"restart-{uuid.uuid4().hex[:6]}:"
    # Enough retries (with back-off) to outlast the restart: a publish whose reply was lost
    # is sent again and recognised, so it counts once; none should fail for good.
    publisher = RedisBackend(redis_server.url, prefix=prefix, retries=10)
    follower = RedisBackend(redis_server.url, prefix=prefix, retries=1)
    received: list[bytes] = []
    stop = threading.Event()

    def follow() -> None:
        for batch in follower.follow("live", "0-0", stop=stop, poll=0.2):
            received.extend(m.data for m in batch.messages)

    thread = threading.Thread(target=follow)
    thread.start()
    published: list[bytes] = []
    failed = 0
    try:
        for i in range(300):
            if i == 100:
                threading.Thread(target=redis_server.restart, args=(1.0,)).start()
            data = f"message {i}".encode()
            try:
                publisher.publish("live", data)
                published.append(data)
            except BackendUnavailable:
                failed += 1
            time.sleep(0.01)
        wait_for(lambda: redis_server.process is not None, 30, "redis-server to be back")
        wait_for(lambda: len(received) >= len(published), 30, "the follower to catch up")
    finally:
        stop.set()
        thread.join(10)
        get_plugins().unregister(name="state-spy")
        publisher.close()
        follower.close()
    missing = [m for m in published if m not in received]
    extra = [m for m in received if m not in published]
    assert received == published, f"missing {missing[:5]}, extra {extra[:5]}, failed {failed}"
    assert "disconnected" in states and "reconnected" in states, "the follower saw the outage"
    assert failed == 0, "the publisher's retries outlasted the restart"


def test_worker_killed_mid_job_the_job_is_reclaimed_and_done(
    redis_server: Any, tmp_path: Path
) -> None:
    check_a_worker_killed_mid_job_loses_nothing(redis_server.url, tmp_path)


def test_a_job_that_kills_its_worker_is_dead_lettered_after_max_tries_deliveries(
    redis_server: Any, tmp_path: Path
) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:6]}:"
    env = worker_env(redis_server.url, prefix, tmp_path, VISIBILITY_TIMEOUT="1", MAX_TRIES="3")
    sender = Notifications(
        config={"BACKEND": "redis", "REDIS_URL": redis_server.url, "REDIS_PREFIX": prefix},
        environ={},
    )
    sender.create_hub("Jobs").register_consumer(lambda e: None, name="crash", mode="queued")
    poison = Event(None, "job", "crash")
    sender.send(poison)
    behind = [Event(None, "job", f"fine {i}") for i in range(3)]
    sender.send_many(behind)

    def dead() -> bool:
        return bool(sender.backend.dead_letters("notifycore"))

    exits: list[int] = []
    worker = start_worker(env, tmp_path)
    try:
        while not dead():  # a supervisor: start a new worker whenever one dies
            wait_for(partial(_ended_or, worker, dead), 60, "a death or the dead letter")
            if worker.poll() is not None:
                _, err = worker.communicate(timeout=30)
                exits.append(worker.returncode)
                assert len(exits) <= 3, f"the job killed {len(exits)} workers: {err}"
                worker = start_worker(env, tmp_path)
        wait_for(
            lambda: set(ids_in(tmp_path / "crash-ok.log")) >= {e.event_id for e in behind},
            60,
            "the jobs behind the poison one",
        )
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert exits == [3, 3, 3]
    assert ids_in(tmp_path / "crash-tries.log") == [poison.event_id] * 3
    (letter,) = sender.backend.dead_letters("notifycore")
    assert poison.event_id.encode() in letter.payload
    assert letter.attempts == 3
    assert letter.error.startswith("worker died: try 3 of 3 never finished"), letter.error
    assert sorted(ids_in(tmp_path / "crash-ok.log")) == sorted(e.event_id for e in behind)
    assert sender.backend.queue_length("notifycore") == 0
    sender.close()


def _ended_or(process: Any, condition: Any) -> bool:
    return process.poll() is not None or bool(condition())


def test_a_worker_reports_a_redis_outage_once_and_its_recovery_once(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    prefix = f"outage-{uuid.uuid4().hex[:6]}:"
    env = worker_env(server.url, prefix, tmp_path, REDIS_RETRIES="1")
    log = tmp_path / "worker.err"
    with open(log, "w") as stderr:
        worker = start_worker(env, tmp_path, stderr)
    sender = None
    try:
        wait_for(lambda: "thread(s)" in log.read_text(), 60, "the worker to start")
        server.stop()
        wait_for(lambda: "backend is down" in log.read_text(), 60, "the outage to be reported")
        # Several failed reserves (each printed a traceback before: that ends the wait too).
        wait_for(
            lambda: (
                len(ids_in(tmp_path / "backend-errors.log")) >= 5
                or log.read_text().count("Traceback") >= 5
            ),
            60,
            "the worker to retry",
        )
        during = log.read_text()
        assert "Traceback" not in during, during
        assert during.count("backend is down") == 1, during
        server.start()
        wait_for(lambda: "answers again" in log.read_text(), 60, "the recovery to be reported")
        sender = Notifications(
            config={"BACKEND": "redis", "REDIS_URL": server.url, "REDIS_PREFIX": prefix},
            environ={},
        )
        sender.create_hub("Jobs").register_consumer(lambda e: None, name="work", mode="queued")
        event = Event(None, "job", "after the outage")
        sender.send(event)
        wait_for(lambda: event.event_id in ids_in(tmp_path / "done.log"), 60, "the job to be done")
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    finally:
        worker.kill()
        if sender is not None:
            sender.close()
        server.stop()
    err = log.read_text()
    assert worker.returncode == 0, err
    lines = err.splitlines()
    down = [line for line in lines if "backend is down" in line]
    back = [line for line in lines if "answers again" in line]
    assert len(down) == 1, err
    assert "WARNING notifycore.worker: reserving a job failed, the backend is down: " in down[0]
    assert len(back) == 1, err
    assert "Traceback" not in err
    assert len(lines) < 10, err
