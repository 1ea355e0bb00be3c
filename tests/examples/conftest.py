"""Real servers for the example tests: an SMTP server (aiosmtpd), a private redis-server, processes.

Everything listens on 127.0.0.1 and is stopped after the test; every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # the bound of every wait in these tests, never a pass/fail threshold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Outbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]  # type: ignore[misc]


class SMTPServer:
    """aiosmtpd on 127.0.0.1 in a thread of this process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.outbox = Outbox()
        self.controller = Controller(self.outbox, hostname="127.0.0.1", port=self.port)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.controller.start()
    try:
        yield server
    finally:
        server.controller.stop()


class RedisServer:
    """A private redis-server process on a free port, without persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed; ./scripts/test installs it "
                "(apt-get install -y redis-server)",
                pytrace=False,
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                *(binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(directory)),
                *("--save", "", "--appendonly", "no", "--protected-mode", "yes"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + WAIT
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=WAIT)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
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
