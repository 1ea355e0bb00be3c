"""REDIS_URL mistakes are configuration errors: fast, clear, masked (issue 12's review).

A wrong or missing password is refused by the server at once and no try can change
that: it is a ``ConfigurationError`` naming REDIS_URL (password masked), never an
outage retried forever — also for a ``worker --burst``. A URL that cannot be a Redis
URL (an invalid port, a cluster or Sentinel URL missing a part) is refused when the
backend is made.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_helpers import APPS, NOTIFYCORE

from notify_redis.backend import RedisBackend
from notify_redis.cluster_testing import RedisNode
from notify_redis.connection import parse_url
from notifycore import ConfigurationError, Notifications
from notifycore.testing import wait_for

PASSWORD = "s3cret-pass"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNode]:
    """A redis-server that requires a password."""
    node = RedisNode(tmp_path_factory.mktemp("guarded"), ["--requirepass", PASSWORD, "--save", ""])
    node.spawn()

    def answers() -> bool:
        assert node.running, node.log_tail()
        try:
            return bool(node.client(password=PASSWORD).ping())
        except redis.ConnectionError:
            return False

    wait_for(answers, 30, "the password-protected redis-server to answer")
    yield node
    node.kill()


def _url(node: RedisNode, password: str | None) -> str:
    return f"redis://{'' if password is None else f':{password}@'}127.0.0.1:{node.port}/0"


@pytest.mark.parametrize("password", ["wrong-one", None], ids=["wrong", "missing"])
def test_a_refused_password_is_a_masked_configuration_error(
    guarded: RedisNode, password: str | None
) -> None:
    backend = RedisBackend(_url(guarded, password), prefix="auth:")
    try:
        for call in (
            lambda: backend.publish("s", b"x"),
            lambda: backend.enqueue("q", b"x"),
            lambda: backend.reserve("q", visibility_timeout=5),
            lambda: backend.read("s"),
            lambda: backend.kv_get("k"),
        ):
            with pytest.raises(ConfigurationError) as info:
                call()
            message = str(info.value)
            assert "REDIS_URL" in message and "credentials" in message
            assert "wrong-one" not in message and PASSWORD not in message
            if password is not None:
                assert ":***@" in message
    finally:
        backend.close()
    # The right password works on the same server.
    good = RedisBackend(_url(guarded, PASSWORD), prefix=f"auth-{password}:")
    try:
        good.publish("s", b"x")
        assert [m.data for m in good.read("s").messages] == [b"x"]
    finally:
        good.close()


def test_a_cluster_url_with_a_refused_password_is_a_configuration_error_too(
    guarded: RedisNode,
) -> None:
    """redis+cluster:// meets the refusal while it learns the cluster's nodes."""
    backend = RedisBackend(f"redis+cluster://:wrong-one@127.0.0.1:{guarded.port}/")
    try:
        with pytest.raises(ConfigurationError) as info:
            backend.publish("s", b"x")
        message = str(info.value)
        assert "REDIS_URL" in message and "credentials" in message and ":***@" in message
        assert "wrong-one" not in message
    finally:
        backend.close()


def test_a_burst_worker_with_a_wrong_password_stops_with_the_error(
    guarded: RedisNode, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND": "redis",
        "NOTIFYCORE_REDIS_URL": _url(guarded, "wrong-one"),
        "WORKER_TEST_DIR": str(tmp_path),
        "PYTHONPATH": str(APPS),
    }
    for burst in (["--burst"], []):
        done = subprocess.run(
            [NOTIFYCORE, "worker", "--app", "redis_app", *burst],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode != 0, done.stderr
        assert "REDIS_URL" in done.stderr and "credentials" in done.stderr, done.stderr
        assert "wrong-one" not in done.stderr + done.stdout
        assert "trying again" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@127.0.0.1:99999/0",
        "redis://:hunter2@127.0.0.1:port/0",
        "redis+cluster://:hunter2@127.0.0.1:7000,127.0.0.1:70000/",
        "redis+cluster://:hunter2@127.0.0.1:7000,127.0.0.1:x/",
        "redis+cluster://:hunter2@/",
        "redis+cluster://:hunter2@127.0.0.1:7000/3",
        "redis+sentinel://:hunter2@127.0.0.1:26379/",
        "redis+sentinel://:hunter2@127.0.0.1:26379/mymaster/zero",
        "redis+sentinel://:hunter2@127.0.0.1:26379/mymaster/0?password=hunter2",
    ],
)
def test_an_invalid_url_is_a_configuration_error_naming_redis_url(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RedisBackend(url)
    message = str(info.value)
    assert "REDIS_URL" in message and "hunter2" not in message and "***" in message
    # The same through the settings.
    with pytest.raises(ConfigurationError) as again:
        Notifications(config={"BACKEND": "redis", "REDIS_URL": url}, environ={})
    assert "REDIS_URL" in str(again.value) and "hunter2" not in str(again.value)


def test_cluster_and_sentinel_urls_are_read_as_documented() -> None:
    cluster = parse_url("redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/")
    assert cluster.kind == "cluster" and cluster.username == "app" and cluster.password == "p@ss"
    assert cluster.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    sentinel = parse_url(
        "redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/2?sentinel_password=x"
    )
    assert sentinel.kind == "sentinel" and sentinel.service == "mymaster" and sentinel.db == 2
    assert sentinel.password == "pw" and dict(sentinel.options) == {"sentinel_password": "x"}
    assert parse_url("redis+sentinel://127.0.0.1:26379/mymaster").db == 0
