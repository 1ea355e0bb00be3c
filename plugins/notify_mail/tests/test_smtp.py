"""SMTPConsumer against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from mail_helpers import queued, smtp

from notify_mail import SMTPConsumer
from notifycore import Event, JobOutcome, Notifications, PermanentFailure, Worker
from notifycore.drivers import CONSUMERS, resolve


def test_the_message_arrives_with_headers_parts_attachments_and_unicode(smtp_server: Any) -> None:
    mail = smtp(smtp_server, html="<h1>{title}</h1><p>{body}</p>")
    pdf = b"%PDF-1.4 fake \x00\xff"
    mail.consume(
        Event(
            None,
            "report",
            "Rapport été ✓ — 日本",
            "Bonjour Zoë,\nvoici le rapport.",
            recipients=["zoe@example.org", "ops@example.org"],
            attachments=[
                {
                    "filename": "rapport.pdf",
                    "content_type": "application/pdf",
                    "content_base64": base64.b64encode(pdf).decode(),
                }
            ],
        )
    )
    smtp_server.wait_for(1)
    ((mail_from, rcpt_tos, _),) = smtp_server.handler.received
    assert mail_from == "noreply@example.org"
    assert rcpt_tos == ["zoe@example.org", "ops@example.org"]
    (message,) = smtp_server.handler.messages()
    assert message["Subject"] == "Rapport été ✓ — 日本"
    assert message["To"] == "zoe@example.org, ops@example.org"
    assert "noreply@example.org" in message["From"]
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "Bonjour Zoë,\nvoici le rapport.\n"
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert html.get_content().replace("\r\n", "\n") == (
        "<h1>Rapport été ✓ — 日本</h1><p>Bonjour Zoë,\nvoici le rapport.</p>\n"
    )
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "rapport.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf


def test_bulk_reconnects_every_max_emails(smtp_server: Any) -> None:
    mail = smtp(smtp_server, max_emails=3)
    sent = mail.send_many(Event(None, "t", f"n{i}", recipients=["a@example.org"]) for i in range(7))
    assert sent == 7
    smtp_server.wait_for(7)
    assert [m["Subject"] for m in smtp_server.handler.messages()] == [f"n{i}" for i in range(7)]
    assert smtp_server.handler.connections == 3  # 3 + 3 + 1
    smtp_server.handler.connections = 0
    smtp(smtp_server).send_many(
        Event(None, "t", f"m{i}", recipients=["a@example.org"]) for i in range(5)
    )
    assert smtp_server.handler.connections == 1, "without a limit, one connection for the batch"


def test_a_5xx_answer_is_a_permanent_failure_with_the_server_answer(smtp_server: Any) -> None:
    smtp_server.handler.answer = "554 5.7.1 Message rejected as spam"
    with pytest.raises(PermanentFailure, match="554 5.7.1 Message rejected as spam"):
        smtp(smtp_server).consume(Event(None, "t", recipients=["a@example.org"]))


def test_worker_dead_letters_a_5xx_at_once_and_retries_a_4xx(
    smtp_server: Any, tmp_path: Any
) -> None:
    n = queued(tmp_path, smtp(smtp_server))
    worker = Worker(n)
    smtp_server.handler.answer = "550 5.1.1 No such user here"
    n.send(Event(None, "t", "refused", recipients=["nobody@example.org"]))
    assert worker.run_once(block=2) is JobOutcome.DEAD
    (letter,) = n.backend.dead_letters("notifycore")
    assert letter.attempts == 1
    assert "550 5.1.1 No such user here" in letter.error
    smtp_server.handler.answer = "451 4.3.0 Try again later"
    n.send(Event(None, "t", "later", recipients=["a@example.org"]))
    assert worker.run_once(block=2) is JobOutcome.RETRY
    smtp_server.handler.answer = None
    assert worker.run_once(block=5) is JobOutcome.DONE
    assert [m["Subject"] for m in smtp_server.handler.messages()] == ["later"]
    n.close()


def test_server_down_then_up_the_message_is_delivered_once(smtp_server: Any, tmp_path: Any) -> None:
    n = queued(tmp_path, smtp(smtp_server))
    worker = Worker(n)
    smtp_server.stop()
    n.send(Event(None, "t", "patience", recipients=["a@example.org"]))
    assert worker.run_once(block=2) is JobOutcome.RETRY  # connection refused: temporary
    smtp_server.start()
    assert worker.run_once(block=5) is JobOutcome.DONE
    assert worker.run_once() is None
    assert [m["Subject"] for m in smtp_server.handler.messages()] == ["patience"]
    assert n.backend.dead_letters("notifycore") == []
    n.close()


def test_header_injection_goes_to_the_dead_letters_without_retries(
    smtp_server: Any, tmp_path: Any
) -> None:
    n = queued(tmp_path, smtp(smtp_server))
    n.send(Event(None, "t", "Hello\nBcc: everyone@example.org", recipients=["a@example.org"]))
    assert Worker(n).run_once(block=2) is JobOutcome.DEAD
    assert "newline in the subject" in n.backend.dead_letters("notifycore")[0].error
    assert smtp_server.handler.received == []
    n.close()


def test_settings_and_entry_point(smtp_server: Any) -> None:
    n = Notifications(
        config={
            "BACKEND": "memory",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": smtp_server.port,
            "MAIL_DEFAULT_SENDER": "robot@example.org",
            "MAIL_MAX_EMAILS": 2,
        },
        environ={},
    )
    cls = resolve(CONSUMERS, "smtp")
    assert cls is SMTPConsumer
    mail = SMTPConsumer.from_settings(n.settings)
    assert (mail.port, mail.max_emails, mail.sender) == (smtp_server.port, 2, "robot@example.org")
    mail.consume(Event(None, "t", "configured", recipients=["a@example.org"]))
    smtp_server.wait_for(1)
    assert smtp_server.handler.messages()[0]["From"] == "robot@example.org"
    with pytest.raises(ValueError, match="exclude each other"):
        SMTPConsumer(use_tls=True, use_ssl=True)
    n.close()


def test_a_batch_with_one_bad_message_sends_none(smtp_server: Any) -> None:
    mail = smtp(smtp_server)
    good = Event(None, "t", "fine", recipients=["a@example.org"])
    bad = Event(None, "t", "bad\x0cBcc: x@example.org", recipients=["a@example.org"])
    with pytest.raises(PermanentFailure):
        mail.send_many([good, bad])
    assert smtp_server.handler.received == []
