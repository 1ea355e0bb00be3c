"""What the mail test modules share: a consumer on the test's SMTP server, and a queued
hub of one mail consumer on an SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from notify_mail import MailConsumer, SMTPConsumer
from notifycore import Event, Notifications


def smtp(server: Any, **options: Any) -> SMTPConsumer:
    """An SMTPConsumer sending to ``server`` (notify_mail.testing.SMTPServer)."""
    options.setdefault("sender", "Notifications <noreply@example.org>")
    return SMTPConsumer("127.0.0.1", server.port, timeout=5, **options)


def queued(tmp_path: Path, consumer: MailConsumer, **config: Any) -> Notifications:
    """Notifications on an SQLite file whose hub "Mail" queues every event for ``consumer``
    (named "mailer"): short back-off, at most four tries."""
    n = Notifications(
        config={
            "BACKEND": "sqlite",
            "BACKEND_URL": f"sqlite:///{tmp_path / 'mail.db'}",
            "RETRY_BACKOFF": 0.01,
            "MAX_TRIES": 4,
            **config,
        },
        environ={},
    )
    n.create_hub("Mail").register_consumer(consumer, name="mailer", mode="queued")
    return n


def check_the_default_message(server: Any, sent: Event) -> None:
    """``server`` got one message for ``sent`` as from_app's defaults make it: subject
    "Event <id>", from@example.org to to@example.org, the event's JSON as its text."""
    server.wait_for(1)
    (message,) = server.handler.messages()
    assert message["Subject"] == f"Event {sent.event_id}"
    assert (message["From"], message["To"]) == ("from@example.org", "to@example.org")
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and text.get_content().rstrip("\r\n") == sent.to_json()
