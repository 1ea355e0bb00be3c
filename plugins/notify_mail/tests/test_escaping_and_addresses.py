"""Event fields are escaped in HTML mail, a recipient is one address, MAIL_PASSWORD is masked.

Against the real aiosmtpd server of the other mail tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_mail
import flask_mailman
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from flask import Flask
from mail_helpers import queued, smtp

from notify_mail import MailConsumer, SMTPConsumer
from notify_mail.flask_email import FlaskEmailConsumer
from notify_mail.flask_mail import FlaskMailConsumer
from notify_mail.testing import Handler
from notifycore import (
    ConfigurationError,
    Event,
    InvalidEvent,
    JobOutcome,
    PermanentFailure,
    Worker,
)
from notifycore.cli import main
from notifycore.listeners import ListenerConfig
from notifycore.testing import free_port

HOSTILE = "<script>alert('x')</script> & \"quoted\""
ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot;"
SECRET = "hunter2"


def html_part(server: Any) -> str:
    server.wait_for(1)
    (message,) = server.handler.messages()
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    content: str = part.get_content()
    return content.replace("\r\n", "\n").rstrip("\n")


# -- HTML ---------------------------------------------------------------------------------------


def test_event_fields_are_escaped_in_html_and_kept_in_text(smtp_server: Any) -> None:
    mail = smtp(smtp_server, html='<h1 title="{title}">{title}</h1><p>{body}</p><i>{tags}</i>')
    mail.consume(
        Event(None, "t", HOSTILE, "<b>bold</b>", recipients=["a@example.org"], tags=["<x>", "&"])
    )
    assert html_part(smtp_server) == (
        f'<h1 title="{ESCAPED}">{ESCAPED}</h1><p>&lt;b&gt;bold&lt;/b&gt;</p><i>&lt;x&gt;, &amp;</i>'
    )
    (message,) = smtp_server.handler.messages()
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and text.get_content().rstrip("\r\n") == "<b>bold</b>"
    assert message["Subject"] == HOSTILE  # a header, not HTML: as written


def test_html_safe_fields_are_inserted_as_they_are(smtp_server: Any) -> None:
    mail = smtp(
        smtp_server,
        html="<div>{body_html}</div><p>{title}</p>",
        html_safe_fields=["body_html"],
    )
    mail.consume(
        Event(
            None,
            "t",
            "<b>title</b>",
            recipients=["a@example.org"],
            body_html='<a href="https://example.org">a link</a>',
        )
    )
    assert html_part(smtp_server) == (
        '<div><a href="https://example.org">a link</a></div><p>&lt;b&gt;title&lt;/b&gt;</p>'
    )


def test_format_specs_apply_before_escaping() -> None:
    mail = MailConsumer(sender="a@example.org", html="{title:.3}|{n:05.1f}|{title!r}")
    message = mail.compose(Event(None, "t", "a&b<c", recipients=["a@example.org"], n=2.25))
    assert message.html == "a&amp;b|002.2|&#x27;a&amp;b&lt;c&#x27;"


def test_html_safe_fields_must_be_a_list() -> None:
    with pytest.raises(ConfigurationError, match="list of field names"):
        MailConsumer(sender="a@example.org", html="{body}", html_safe_fields="body")


def test_html_safe_fields_from_a_listener_declaration() -> None:
    config = ListenerConfig(
        {"listeners.mail.html": "<p>{raw}</p>", "listeners.mail.html_safe_fields": "raw other"},
        settings={},
    )
    mail = SMTPConsumer.load_from_config(config, "listeners.mail.")
    assert mail.html_safe_fields == {"raw", "other"}


@pytest.fixture
def flask_consumers(smtp_server: Any) -> Iterator[list[MailConsumer]]:
    app = Flask("escaping")
    app.config.update(
        MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_DEFAULT_SENDER="f@example.org"
    )
    flask_mail.Mail(app)
    flask_mailman.Mail(app)
    yield [
        FlaskMailConsumer.from_app(app, html="<p>{title}</p>"),
        FlaskEmailConsumer.from_app(app, html="<p>{title}</p>"),
    ]


def test_the_flask_consumers_escape_too(smtp_server: Any, flask_consumers: list[Any]) -> None:
    for mail in flask_consumers:
        smtp_server.handler.received.clear()
        mail.consume(Event(None, "t", HOSTILE, recipients=["a@example.org"]))
        assert html_part(smtp_server) == f"<p>{ESCAPED}</p>"


# -- recipients ---------------------------------------------------------------------------------

SMUGGLED = [
    "bob@example.com, x@evil.example",
    "bob@example.com,x@evil.example",
    "bob@example.com; x@evil.example",
    "bob@example.com x@evil.example",
    "Bob <bob@example.com>, x@evil.example",
    "Bob <bob@example.com> x@evil.example",
    "<bob@example.com><x@evil.example>",
    "friends: bob@example.com, x@evil.example;",
    "undisclosed-recipients:;",
    "Bob, Smith <bob@example.com>",
    "bob@example.com\nBcc: x@evil.example",
    "bob@example.com\u2028x@evil.example",
    "bob@@example.com",
    "@example.com",
    "bob@",
]
FINE = [
    "bob@example.com",
    "Bob Smith <bob@example.com>",
    '"Smith, Bob" <bob@example.com>',
    "Zoë <zoë@exämple.org>",
    "bob+tag@example.com",
]


@pytest.mark.parametrize("address", SMUGGLED)
def test_a_recipient_that_is_not_one_address_is_refused(address: str) -> None:
    cases = [
        (MailConsumer(sender="a@example.org", recipients=["ok@example.org", address]), "bob"),
        (MailConsumer(sender="a@example.org", resolver=lambda user: address), "bob"),
    ]
    if "\n" in address:  # a control character: not even an event's recipient
        with pytest.raises(InvalidEvent, match="recipients: ids must not contain control"):
            Event(None, "t", recipients=[address])
    else:
        cases.append((MailConsumer(sender="a@example.org"), address))
    for mail, recipient in cases:
        with pytest.raises(PermanentFailure, match="recipient"):
            mail.compose(Event(None, "t", recipients=[recipient]))


@pytest.mark.parametrize("address", FINE)
def test_one_address_with_or_without_a_name_is_fine(smtp_server: Any, address: str) -> None:
    smtp(smtp_server).consume(Event(None, "t", "hi", recipients=[address]))
    smtp_server.wait_for(1)
    ((_, rcpt_tos, _),) = smtp_server.handler.received
    assert len(rcpt_tos) == 1 and "@" in rcpt_tos[0]


def test_a_smuggled_list_is_dead_lettered_at_once_and_nothing_is_sent(
    smtp_server: Any, tmp_path: Path
) -> None:
    n = queued(tmp_path, smtp(smtp_server))
    try:
        n.send(Event(None, "t", "hi", recipients=["bob@example.com, x@evil.example"]))
        assert Worker(n).run_once(block=2) is JobOutcome.DEAD
        (letter,) = n.backend.dead_letters("notifycore")
        assert letter.attempts == 1
        assert "'bob@example.com, x@evil.example' is not one e-mail address" in letter.error
        assert smtp_server.handler.received == []
        assert smtp_server.handler.connections == 0
    finally:
        n.close()


# -- MAIL_PASSWORD ------------------------------------------------------------------------------


class Refusing:
    """An authenticator that refuses everyone, remembering that a login was tried."""

    def __init__(self) -> None:
        self.tries = 0

    def __call__(self, *args: Any) -> AuthResult:
        self.tries += 1
        return AuthResult(success=False, handled=False)


@pytest.fixture
def auth_server() -> Iterator[tuple[int, Refusing]]:
    """aiosmtpd on 127.0.0.1 that offers AUTH (without TLS, for the test) and refuses it."""
    port, refusing = free_port(), Refusing()
    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        authenticator=refusing,
        auth_require_tls=False,
    )
    controller.start()
    yield port, refusing
    controller.stop()


def test_mail_password_never_shows(
    auth_server: tuple[int, Refusing],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    port, refusing = auth_server
    settings = {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": port,
        "MAIL_USERNAME": "robot",
        "MAIL_PASSWORD": SECRET,
        "MAIL_DEFAULT_SENDER": "robot@example.org",
    }
    mail = SMTPConsumer.from_settings(settings)
    n = queued(tmp_path, mail, **settings)
    try:
        n.send(Event(None, "t", "hi", recipients=["a@example.org"]))
        assert Worker(n).run_once(block=2) is JobOutcome.DEAD  # 535: a permanent refusal
        assert refusing.tries >= 1, "the consumer tried to log in"
        letters = n.backend.dead_letters("notifycore")
        assert "535" in letters[0].error
        shown = [repr(n.settings), str(n.settings), repr(mail), repr(n)]
        shown += [letter.error for letter in letters]
    finally:
        n.close()
    config = tmp_path / "notifycore.toml"
    config.write_text(
        f'backend = "memory"\nmail_password = "{SECRET}"\n'
        f'[listeners.mailer]\nuse = "smtp"\npassword = "{SECRET}"\n'
        '[hubs.Mail]\nlisteners = ["mailer"]\n'
    )
    assert main(["check", "--config", str(config)]) == 0
    config.write_text("mail_password = 4815162342\n")
    assert main(["check", "--config", str(config)]) != 0
    out, err = capsys.readouterr()
    assert "listener mailer" in out and "MAIL_PASSWORD" in err
    everything = "\n".join([*shown, out, err, caplog.text])
    assert "MAIL_PASSWORD': '***'" in everything
    assert SECRET not in everything and "4815162342" not in everything
