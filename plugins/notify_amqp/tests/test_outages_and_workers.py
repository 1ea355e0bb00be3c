"""notify-amqp against a real rabbitmq-server: restarts, killed workers, poison jobs, outages."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from notify_amqp.backend import AmqpBackend
from notifycore import BackendUnavailable, Event, Notifications
from notifycore.testing import free_port, wait_for

APPS = Path(__file__).resolve().parent / "apps"
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


def test_backend_by_name_with_amqp_url(rabbit_server: Any) -> None:
    n = Notifications(config={"BACKEND": "amqp", "AMQP_URL": rabbit_server.url}, environ={})
    try:
        assert isinstance(n.backend, AmqpBackend)
        assert n.backend.url == rabbit_server.url
    finally:
        n.close()


def test_send_fails_clearly_when_rabbitmq_is_unreachable() -> None:
    port = free_port()
    url = f"amqp://guest:s3cret@127.0.0.1:{port}//"
    n = Notifications(config={"BACKEND": "amqp", "AMQP_URL": url, "AMQP_RETRIES": 1}, environ={})
    hub = n.create_hub("H")
    hub.register_consumer(lambda e: None, name="mail", mode="queued")
    with pytest.raises(BackendUnavailable) as info:
        n.send(Event(None, "t"))
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "after 1 retries" in message
    assert "s3cret" not in message, "the password must never be shown"
    n.close()


def test_rabbitmq_restart_loses_no_acknowledged_publish_and_the_follower_resumes(
    rabbit_server: Any, states: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"restart-{uuid.uuid4().hex[:6]}."
    caplog.set_level(logging.DEBUG)
    # Enough reconnections (with back-off) to outlast the restart: a publish whose confirmation
    # was lost is looked for in the stream before it is sent again, so it counts once.
    publisher = AmqpBackend(rabbit_server.url, prefix=prefix, retries=40)
    follower = AmqpBackend(rabbit_server.url, prefix=prefix, retries=1)
    first = publisher.publish("live", b"before")
    received: list[bytes] = []
    offsets: list[str] = []
    stop = threading.Event()

    def follow() -> None:
        for batch in follower.follow("live", first, stop=stop, poll=0.2):
            received.extend(m.data for m in batch.messages)
            offsets.extend(m.id for m in batch.messages)

    restart_failed: list[BaseException] = []

    def restart() -> None:
        try:
            rabbit_server.restart(0.5)
        except BaseException as exc:
            restart_failed.append(exc)

    thread = threading.Thread(target=follow)
    thread.start()
    published: list[bytes] = []
    failed = 0
    restarting = threading.Thread(target=restart)
    after = 0
    try:
        # Publish before the restart, all through it, and 50 more once it is over.
        for i in range(1_000_000):  # bounded; the restart (at most a few minutes) ends it
            if i == 50:
                restarting.start()
            data = f"message {i}".encode()
            try:
                publisher.publish("live", data)
                published.append(data)
            except BackendUnavailable:
                failed += 1
            if i > 50 and not restarting.is_alive():
                after += 1
                if after == 50:
                    break
        restarting.join(300)
        assert not restart_failed, restart_failed
        wait_for(lambda: len(received) >= len(published), 120, "the follower to catch up")
    finally:
        stop.set()
        thread.join(30)
        publisher.close()
        follower.close()
    sent, got = set(published), set(received)
    missing = [m for m in published if m not in got]
    extra = [m for m in received if m not in sent]
    assert not missing, f"acknowledged but never delivered: {missing[:5]}"
    assert received == published, f"extra {extra[:5]}, failed {failed}"
    assert len(set(offsets)) == len(offsets), "no message was delivered twice"
    assert "disconnected" in states, "the follower saw the outage"
    # Each outage is reported once, and so is its end.
    assert states == ["disconnected", "reconnected"] * (len(states) // 2), states
    assert failed == 0, "the publisher's reconnections outlasted the restart"
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info]
    assert not tracebacks, f"the backend logged tracebacks: {tracebacks[:3]}"


def _worker_env(rabbit_server: Any, prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND": "amqp",
        "NOTIFYCORE_AMQP_URL": rabbit_server.url,
        "NOTIFYCORE_AMQP_PREFIX": prefix,
        "NOTIFYCORE_RETRY_BACKOFF": "0.1",
        "WORKER_TEST_DIR": str(tmp_path),
        "PYTHONPATH": str(APPS),
    }


def _sender(rabbit_server: Any, prefix: str) -> Notifications:
    sender = Notifications(
        config={"BACKEND": "amqp", "AMQP_URL": rabbit_server.url, "AMQP_PREFIX": prefix},
        environ={},
    )
    hub = sender.create_hub("Jobs")
    hub.register_consumer(lambda e: None, name="work", mode="queued")
    hub.register_consumer(lambda e: None, name="poison", mode="queued", max_tries=3)
    return sender


def _start_worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [NOTIFYCORE, "worker", "--app", "amqp_app", "--concurrency", "2"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_worker_killed_mid_job_its_unacked_job_is_redelivered_and_done(
    rabbit_server: Any, tmp_path: Path
) -> None:
    prefix = f"kill-{uuid.uuid4().hex[:6]}."
    env = _worker_env(rabbit_server, prefix, tmp_path)
    sender = _sender(rabbit_server, prefix)
    slow = Event(None, "job", "slow")
    quick = [Event(None, "job", f"quick {i}") for i in range(20)]
    sender.send(slow)
    sender.send_many(quick)

    first = _start_worker(env, tmp_path)
    try:
        wait_for(lambda: (tmp_path / "slow-tried").exists(), 60, "the slow job to start")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        first.kill()
    assert slow.event_id not in _lines(tmp_path / "done.log")

    second = _start_worker(env, tmp_path)
    expected = {slow.event_id} | {e.event_id for e in quick}
    try:
        wait_for(
            lambda: set(_lines(tmp_path / "done.log")) >= expected,
            60,
            "the redelivered job and the rest to be done",
        )
        wait_for(lambda: sender.backend.queue_length("notifycore") == 0, 30, "the queue to empty")
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
    finally:
        second.kill()
    assert second.returncode == 0, err
    done = _lines(tmp_path / "done.log")
    assert done.count(slow.event_id) == 1, "the killed job was redelivered and done once"
    assert sender.backend.dead_letters("notifycore") == []
    sender.close()


def test_poison_job_ends_in_the_dead_letters_after_its_tries_and_the_worker_goes_on(
    rabbit_server: Any, tmp_path: Path
) -> None:
    prefix = f"poison-{uuid.uuid4().hex[:6]}."
    env = _worker_env(rabbit_server, prefix, tmp_path)
    sender = _sender(rabbit_server, prefix)
    bad = Event(None, "job", "poison")
    sender.send(bad)
    good = [Event(None, "job", f"fine {i}") for i in range(5)]
    worker = _start_worker(env, tmp_path)
    try:
        sender.send_many(good)
        wait_for(lambda: len(sender.backend.dead_letters("notifycore")) == 1, 60, "the dead letter")
        wait_for(
            lambda: set(_lines(tmp_path / "poison-ok.log")) >= {e.event_id for e in good},
            60,
            "the jobs after the poison one",
        )
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    (letter,) = sender.backend.dead_letters("notifycore")
    assert letter.attempts == 3
    assert "ValueError: cannot handle poison" in letter.error
    assert bad.event_id.encode() in letter.payload
    sender.close()
