"""A real SMTP server (aiosmtpd, the ``test`` extra) on 127.0.0.1, for tests and examples.

``SMTPServer().start()`` listens on a free port; its ``handler`` keeps every
message it accepts (``received``, ``messages()``) and counts connections;
setting ``handler.answer`` makes DATA fail with that reply.
"""

from __future__ import annotations

import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from notifycore.testing import free_port

__all__ = ["Handler", "SMTPServer"]


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
        return [message_from_bytes(raw, policy=policy.default) for _, _, raw in self.received]


class SMTPServer:
    """aiosmtpd on 127.0.0.1, in a thread of this process."""

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
