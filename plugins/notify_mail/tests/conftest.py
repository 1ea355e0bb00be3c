"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the mail tests."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Handler:
    """Records what it receives; ``answer`` makes DATA fail with a given reply."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.connections = 0
        self.answer: str | None = None

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answer is not None:
            return self.answer
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]  # type: ignore[misc]


class SMTPServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.handler = Handler()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def wait_for(self, count: int, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while len(self.handler.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()
