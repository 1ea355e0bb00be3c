"""Real servers for the example tests: an SMTP server (aiosmtpd), a private redis-server, processes.

The servers are the plugins' own test servers (``notify_mail.testing``, ``notify_redis.testing``).

Everything listens on 127.0.0.1 and is stopped after the test; every wait is bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from notify_mail.testing import SMTPServer
from notify_redis.testing import RedisServer
from notifycore.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # the bound of every wait in these tests, never a pass/fail threshold


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


class Processes:
    """Python processes started from the repository root, killed at the end of the test."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        """This environment without NOTIFYCORE_* settings, the repository on the path, plus ``extra``."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")}
        return {**base, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """``args`` run by this interpreter (``-m module``) or, for ``notifycore``, its script."""
        command = (
            [str(Path(sys.executable).with_name("notifycore")), *args[1:]]
            if args[0] == "notifycore"
            else [sys.executable, *args]
        )
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
            try:
                process.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=WAIT)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.stop_all()


def wait_until_serving(url: str, process: subprocess.Popen[str] | None = None) -> httpx.Response:
    """GET ``url`` until the server answers (bounded); fails early if ``process`` exits."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return httpx.get(url, timeout=WAIT)
        except httpx.TransportError:
            if process is not None and process.poll() is not None:
                output = process.communicate(timeout=WAIT)[0]
                raise AssertionError(
                    f"the server exited with {process.returncode}:\n{output}"
                ) from None
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answered at {url} within {WAIT}s") from None
            time.sleep(0.05)


@pytest.fixture
def wait_serving() -> Callable[..., httpx.Response]:
    return wait_until_serving


@pytest.fixture
def port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()
