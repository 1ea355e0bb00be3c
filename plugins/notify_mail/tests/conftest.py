"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the mail tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# mail_helpers sits beside this file; --import-mode=importlib does not add it to the path.
sys.path.insert(0, str(Path(__file__).parent))

from notify_mail.testing import SMTPServer


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    server = SMTPServer()
    server.start()
    yield server
    server.stop()
