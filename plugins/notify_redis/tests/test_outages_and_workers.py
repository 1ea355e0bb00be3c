"""notify-redis against a real redis-server: outages, restarts and killed workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from notify_redis.backend import RedisBackend
from notifycore import BackendUnavailable, Event, Notifications, hookimpl
from notifycore.plugins import get_plugins
from notifycore.testing import wait_for

APPS = Path(__file__).resolve().parent / "apps"
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


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
    prefix = f"kill-{uuid.uuid4().hex[:6]}:"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND": "redis",
        "NOTIFYCORE_REDIS_URL": redis_server.url,
        "NOTIFYCORE_REDIS_PREFIX": prefix,
        "NOTIFYCORE_VISIBILITY_TIMEOUT": "1",
        "WORKER_TEST_DIR": str(tmp_path),
        "PYTHONPATH": str(APPS),
    }
    sender = Notifications(
        config={"BACKEND": "redis", "REDIS_URL": redis_server.url, "REDIS_PREFIX": prefix},
        environ={},
    )
    sender.create_hub("Jobs").register_consumer(lambda e: None, name="work", mode="queued")
    slow = Event(None, "job", "slow")
    quick = [Event(None, "job", f"quick {i}") for i in range(20)]
    sender.send(slow)
    sender.send_many(quick)

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [NOTIFYCORE, "worker", "--app", "redis_app"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    first = start()
    try:
        wait_for(lambda: (tmp_path / "slow-tried").exists(), 60, "the slow job to start")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        first.kill()
    assert (
        not (tmp_path / "done.log").exists()
        or slow.event_id not in (tmp_path / "done.log").read_text()
    )

    second = start()
    expected = {slow.event_id} | {e.event_id for e in quick}

    def done_ids() -> list[str]:
        path = tmp_path / "done.log"
        return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []

    try:
        wait_for(
            lambda: set(done_ids()) >= expected, 60, "the reclaimed job and the rest to be done"
        )
        wait_for(lambda: sender.backend.queue_length("notifycore") == 0, 30, "the queue to empty")
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=30)
    finally:
        second.kill()
    assert second.returncode == 0, err
    assert done_ids().count(slow.event_id) == 1, "the killed job was reclaimed and done once"
    assert sender.backend.dead_letters("notifycore") == []
    sender.close()
