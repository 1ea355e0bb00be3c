"""Credentials RabbitMQ refuses are a configuration error, not an outage (issue 12 review).

A wrong password, a virtual host the user may not use, or a permission the user lacks
fails at once with a ConfigurationError that names AMQP_URL and never shows the password;
a worker (``--burst`` or not) stops on it instead of logging "the backend is down ...
trying again" forever. On the real server: a wrong password for guest, a user of our own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from notify_amqp.backend import AmqpBackend
from notifycore import ConfigurationError, Event, Notifications
from notifycore.worker import Worker

APPS = Path(__file__).resolve().parent / "apps"
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))
SECRET = "wr0ng-s3cret"


def _url(rabbit_server: Any, user: str = "guest", password: str = SECRET, vhost: str = "/") -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{rabbit_server.port}/{vhost}"


def _refused(info: pytest.ExceptionInfo[ConfigurationError], what: str) -> None:
    message = str(info.value)
    assert what in message and "AMQP_URL" in message, message
    assert SECRET not in message and "***" in message, "the password must never be shown"


def test_a_wrong_password_fails_fast_as_a_configuration_error(
    rabbit_server: Any, states: list[str]
) -> None:
    backend = AmqpBackend(_url(rabbit_server), prefix=f"pw-{uuid.uuid4().hex[:6]}.", retries=2)
    try:
        with pytest.raises(ConfigurationError) as info:
            backend.publish("s", b"x")
        _refused(info, "user name or password")
        with pytest.raises(ConfigurationError):
            backend.enqueue("q", b"x")
        with pytest.raises(ConfigurationError):
            backend.reserve("q", visibility_timeout=30)
        with pytest.raises(ConfigurationError):  # a follower does not wait it out either
            next(backend.follow("s"))
        assert states == [], "a refusal is not reported as an outage"
    finally:
        backend.close()


def test_a_virtual_host_refused_is_a_configuration_error(rabbit_server: Any) -> None:
    backend = AmqpBackend(_url(rabbit_server, password="guest", vhost="nope"), retries=2)
    try:
        with pytest.raises(ConfigurationError) as info:
            backend.publish("s", b"x")
        message = str(info.value)
        assert "virtual host" in message and "AMQP_URL" in message and "guest:***@" in message
    finally:
        backend.close()


def test_a_user_without_permissions_gets_a_configuration_error(rabbit_server: Any) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    rabbit_server.ctl("add_user", user, SECRET)
    # May use the virtual host, may configure nothing: declaring a stream is refused.
    rabbit_server.ctl("set_permissions", "-p", "/", user, "^$", ".*", ".*")
    backend = AmqpBackend(_url(rabbit_server, user=user), retries=2)
    try:
        with pytest.raises(ConfigurationError) as info:
            backend.publish("s", b"x")
        _refused(info, "permissions")
    finally:
        backend.close()
        rabbit_server.ctl("delete_user", user)


def _worker_env(rabbit_server: Any, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND": "amqp",
        "NOTIFYCORE_AMQP_URL": _url(rabbit_server),
        "WORKER_TEST_DIR": str(tmp_path),
        "PYTHONPATH": str(APPS),
    }


@pytest.mark.parametrize("burst", [True, False], ids=["burst", "running"])
def test_a_worker_with_a_wrong_password_exits_with_a_clear_error(
    rabbit_server: Any, tmp_path: Path, burst: bool
) -> None:
    command = [NOTIFYCORE, "worker", "--app", "amqp_app", "--concurrency", "2"]
    process = subprocess.Popen(
        [*command, "--burst"] if burst else command,
        env=_worker_env(rabbit_server, tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = process.communicate(timeout=120)  # a bound: before the fix it never ended
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode != 0, err
    assert "user name or password in AMQP_URL" in err, err
    assert SECRET not in err, "the password must never be shown"
    assert "trying again" not in err and "backend is down" not in err, err


def test_worker_run_raises_the_configuration_error(rabbit_server: Any) -> None:
    n = Notifications(config={"BACKEND": "amqp", "AMQP_URL": _url(rabbit_server)}, environ={})
    hub = n.create_hub("H")
    hub.register_consumer(lambda e: None, name="c", mode="queued")
    worker = Worker(n, concurrency=2)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)  # a bound: before the fix it waited out the "outage" forever
    try:
        assert not thread.is_alive(), "the worker stops on a configuration error"
        assert len(raised) == 1 and isinstance(raised[0], ConfigurationError), raised
        assert worker.fatal is raised[0]
        assert worker.backend_errors == 0, "not counted as an outage"
        with pytest.raises(ConfigurationError):  # and sending says so too
            n.send(Event(None, "t"))
    finally:
        if thread.is_alive():
            worker.request_stop(now=True)
            thread.join(30)
        n.close()
