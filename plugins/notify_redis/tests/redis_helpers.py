"""What several notify_redis test modules share: a multi-node setup run for a module, the
backend contract on a URL, and the worker processes of the outage and failover tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from notify_redis.backend import RedisBackend
from notify_redis.cluster_testing import Traffic
from notifycore import Event, Notifications
from notifycore.backends.capabilities import capabilities
from notifycore.testing import wait_for
from notifycore.testing.contract import BackendContract

APPS = Path(__file__).resolve().parent / "apps"
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


class _Servers(Protocol):
    def start(self) -> None: ...

    def shutdown(self) -> None: ...


S = TypeVar("S", bound=_Servers)


def running(servers: S) -> Iterator[S]:
    """Body of a fixture: ``servers`` started (a failure to start, which shuts down what
    it started, fails the test run loudly), and shut down afterwards."""
    try:
        servers.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield servers
    finally:
        servers.shutdown()


class RedisContract(BackendContract):
    """The backend contract on ``self.url`` (set by a subclass's autouse fixture), each test
    under a prefix of its own."""

    url: str

    def make_backend(self, **options: Any) -> RedisBackend:
        return RedisBackend(self.url, prefix=f"test-{uuid.uuid4().hex[:8]}:", **options)

    def test_every_optional_capability_is_offered(self) -> None:
        # So that none of the optional contract tests passes by finding it refused.
        backend = self.make_backend()
        try:
            assert capabilities(backend) == ["claims", "key-value store", "counters", "inboxes"]
        finally:
            backend.close()


def check_the_traffic_went_on(
    traffic: Traffic, before: tuple[int, int], setup: str, wait_replicas: int
) -> None:
    """After a failover (``before``: the jobs run and messages followed when it was over):
    the traffic stops and settles; the worker and the follower went on without a restart,
    and with ``REDIS_WAIT_REPLICAS`` nothing acknowledged was lost (without, it is
    printed, not asserted)."""
    ran_before, followed_before = before
    traffic.stop()
    traffic.settle(60)
    print(f"{setup} failover, REDIS_WAIT_REPLICAS={wait_replicas}: {traffic.report()}")
    assert len(traffic.ran) > ran_before and len(traffic.followed) > followed_before
    jobs, messages = traffic.missing()
    if wait_replicas:
        assert not jobs and not messages, traffic.report()


def worker_env(url: str, prefix: str, directory: Path, **settings: str) -> dict[str, str]:
    """The environment of a ``notifycore worker --app redis_app`` (tests/apps) on ``url``:
    no NOTIFYCORE_* setting of the caller's, these settings instead."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND": "redis",
        "NOTIFYCORE_REDIS_URL": url,
        "NOTIFYCORE_REDIS_PREFIX": prefix,
        "WORKER_TEST_DIR": str(directory),
        "PYTHONPATH": str(APPS),
        **{f"NOTIFYCORE_{k}": v for k, v in settings.items()},
    }


def start_worker(env: dict[str, str], cwd: Path, stderr: Any = subprocess.PIPE) -> Any:
    return subprocess.Popen(
        [NOTIFYCORE, "worker", "--app", "redis_app"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def ids_in(path: Path) -> list[str]:
    """The event ids redis_app wrote to ``path``, one a line (none before it wrote any)."""
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def check_a_worker_killed_mid_job_loses_nothing(url: str, directory: Path) -> None:
    """A worker killed (SIGKILL) during a slow job: the next worker reclaims the job once
    it is no longer visible to the dead one, and runs it and the rest, each once."""
    prefix = f"kill-{uuid.uuid4().hex[:6]}:"
    env = worker_env(url, prefix, directory, VISIBILITY_TIMEOUT="1")
    sender = Notifications(
        config={"BACKEND": "redis", "REDIS_URL": url, "REDIS_PREFIX": prefix}, environ={}
    )
    sender.create_hub("Jobs").register_consumer(lambda e: None, name="work", mode="queued")
    slow = Event(None, "job", "slow")
    quick = [Event(None, "job", f"quick {i}") for i in range(20)]
    sender.send(slow)
    sender.send_many(quick)
    done = directory / "done.log"
    first = start_worker(env, directory)
    try:
        wait_for(lambda: (directory / "slow-tried").exists(), 60, "the slow job to start")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        first.kill()
    assert slow.event_id not in ids_in(done)
    second = start_worker(env, directory)
    expected = {slow.event_id} | {e.event_id for e in quick}
    try:
        wait_for(lambda: set(ids_in(done)) >= expected, 60, "the reclaimed job and the rest")
        wait_for(lambda: sender.backend.queue_length("notifycore") == 0, 30, "the queue to empty")
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=30)
    finally:
        second.kill()
    assert second.returncode == 0, err
    assert ids_in(done).count(slow.event_id) == 1, "the killed job was reclaimed and done once"
    assert sender.backend.dead_letters("notifycore") == []
    sender.close()
