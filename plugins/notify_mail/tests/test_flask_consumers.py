"""FlaskMailConsumer (Flask-Mail) and FlaskEmailConsumer (flask-mailman), on a real SMTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask_mail
import flask_mailman
import pytest
from flask import Flask
from mail_helpers import check_the_default_message

from notify_mail.flask_email import FlaskEmailConsumer
from notify_mail.flask_mail import FlaskMailConsumer
from notifycore import ConfigurationError, Event, PermanentFailure
from notifycore.drivers import CONSUMERS, resolve


def flask_app(server: Any, **config: Any) -> Flask:
    app = Flask("mailtest")
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=server.port,
        MAIL_DEFAULT_SENDER="flask@example.org",
        **config,
    )
    return app


def event(title: str = "Bonjour ✓", **kw: Any) -> Event:
    kw.setdefault("recipients", ["u@example.org"])
    return Event(None, "t", title, "Corps é", **kw)


# -- Flask-Mail --------------------------------------------------------------------------------


def test_flask_mail_sends_through_the_apps_extension(smtp_server: Any) -> None:
    app = flask_app(smtp_server)
    flask_mail.Mail(app)
    mail = FlaskMailConsumer.from_app(app, subject="{title}", html="<b>{body}</b>")
    with app.extensions["mail"].record_messages() as outbox:
        mail.consume(
            event(attachments=[{"filename": "a.txt", "content_type": "text/plain", "content": "ü"}])
        )
    assert [m.subject for m in outbox] == ["Bonjour ✓"]
    smtp_server.wait_for(1)
    (message,) = smtp_server.handler.messages()
    assert message["Subject"] == "Bonjour ✓"
    assert message["From"] == "flask@example.org"
    html = message.get_body(preferencelist=("html",))
    assert html is not None and "<b>Corps é</b>" in html.get_content()
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "a.txt"
    assert attachment.get_payload(decode=True) == "ü".encode()


def test_flask_mail_suppress_send_and_testing_record_without_sending(smtp_server: Any) -> None:
    for config in ({"MAIL_SUPPRESS_SEND": True}, {"TESTING": True}):
        app = flask_app(smtp_server, **config)
        mail_ext = flask_mail.Mail(app)
        with mail_ext.record_messages() as outbox:
            FlaskMailConsumer.from_app(app, subject="{title}").consume(event("suppressed"))
        assert [m.subject for m in outbox] == ["suppressed"]
    assert smtp_server.handler.received == []
    assert smtp_server.handler.connections == 0


def test_flask_mail_bulk_follows_max_emails(smtp_server: Any) -> None:
    app = flask_app(smtp_server, MAIL_MAX_EMAILS=2)
    flask_mail.Mail(app)
    FlaskMailConsumer.from_app(app).send_many([event(f"n{i}") for i in range(5)])
    smtp_server.wait_for(5)
    assert len(smtp_server.handler.received) == 5
    assert smtp_server.handler.connections == 3


def test_flask_mail_5xx_and_injection_are_permanent(smtp_server: Any) -> None:
    app = flask_app(smtp_server)
    flask_mail.Mail(app)
    mail = FlaskMailConsumer.from_app(app, subject="{title}")
    with pytest.raises(PermanentFailure, match="newline in the subject"):
        mail.consume(event("a\nBcc: x@example.org"))
    smtp_server.handler.answer = "552 5.3.4 Message too big"
    with pytest.raises(PermanentFailure, match="552 5.3.4 Message too big"):
        mail.consume(event())


def test_flask_mail_from_app_works_as_flask_notifications_did(smtp_server: Any) -> None:
    """No Mail(app) first: from_app sets Flask-Mail up; the subject is Event <id>, the text JSON."""
    app = flask_app(smtp_server)
    assert "mail" not in app.extensions
    # The original's positional form: from_app(app, sender, recipients).
    mail = FlaskMailConsumer.from_app(app, "from@example.org", ["to@example.org"])
    assert isinstance(mail.mail, flask_mail.Mail)
    assert "mail" in app.extensions
    sent = event(recipients=["someone@example.org"])
    with mail.mail.record_messages() as outbox:
        mail.consume(sent)
    assert [(m.subject, m.body, m.recipients) for m in outbox] == [
        (f"Event {sent.event_id}", sent.to_json(), ["to@example.org"])
    ]
    check_the_default_message(smtp_server, sent)
    # A second consumer reuses the extension the first one made.
    assert FlaskMailConsumer.from_app(app).mail is app.extensions["mail"]


def test_flask_mail_needs_a_flask_app() -> None:
    with pytest.raises(ConfigurationError, match="needs the Flask app, not Mail"):
        FlaskMailConsumer(flask_mail.Mail(), "from@example.org")  # type: ignore[arg-type]


# -- flask-mailman -----------------------------------------------------------------------------


def test_flask_email_smtp_backend(smtp_server: Any) -> None:
    app = flask_app(smtp_server, MAIL_BACKEND="smtp")
    flask_mailman.Mail(app)
    FlaskEmailConsumer.from_app(app, subject="{title}", html="<i>{title}</i>").consume(
        event(attachments=[{"filename": "n.txt", "content_type": "text/plain", "content": "note"}])
    )
    smtp_server.wait_for(1)
    (message,) = smtp_server.handler.messages()
    assert message["Subject"] == "Bonjour ✓"
    html = message.get_body(preferencelist=("html",))
    assert html is not None and "<i>Bonjour ✓</i>" in html.get_content()
    assert [a.get_filename() for a in message.iter_attachments()] == ["n.txt"]


def test_flask_email_locmem_backend_and_bulk(smtp_server: Any) -> None:
    app = flask_app(smtp_server, MAIL_BACKEND="locmem")
    mailman = flask_mailman.Mail(app)
    FlaskEmailConsumer.from_app(app, subject="{title}").send_many(
        [event(f"n{i}") for i in range(3)]
    )
    assert [m.subject for m in mailman.outbox] == ["n0", "n1", "n2"]
    assert smtp_server.handler.received == []
    smtp_app = flask_app(smtp_server, MAIL_BACKEND="smtp", MAIL_MAX_EMAILS=2)
    flask_mailman.Mail(smtp_app)
    FlaskEmailConsumer.from_app(smtp_app).send_many([event(f"m{i}") for i in range(5)])
    smtp_server.wait_for(5)
    assert smtp_server.handler.connections == 3


def test_flask_email_from_app_works_as_flask_notifications_did(smtp_server: Any) -> None:
    app = flask_app(smtp_server, MAIL_BACKEND="smtp")
    assert "mailman" not in app.extensions
    mail = FlaskEmailConsumer.from_app(app, "from@example.org", ["to@example.org"])
    assert mail.mail is app.extensions["mailman"]
    sent = event()
    mail.consume(sent)
    check_the_default_message(smtp_server, sent)
    assert FlaskEmailConsumer.from_app(app).mail is app.extensions["mailman"]


def test_flask_email_file_and_console_backends(
    smtp_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = flask_app(smtp_server, MAIL_BACKEND="file", MAIL_FILE_PATH=str(tmp_path))
    flask_mailman.Mail(app)
    FlaskEmailConsumer.from_app(app).consume(event("to a file"))
    (written,) = list(tmp_path.iterdir())
    assert "to a file" in written.read_text()
    console = flask_app(smtp_server)
    flask_mailman.Mail(console)
    FlaskEmailConsumer.from_app(console, backend="console").consume(event("to the console"))
    assert "to the console" in capsys.readouterr().out


def test_flask_email_5xx_is_permanent(smtp_server: Any) -> None:
    app = flask_app(smtp_server, MAIL_BACKEND="smtp")
    flask_mailman.Mail(app)
    smtp_server.handler.answer = "550 5.7.1 Relaying denied"
    with pytest.raises(PermanentFailure, match="550 5.7.1 Relaying denied"):
        FlaskEmailConsumer.from_app(app).consume(event())


def test_entry_points() -> None:
    assert resolve(CONSUMERS, "flask_mail") is FlaskMailConsumer
    assert resolve(CONSUMERS, "flask_email") is FlaskEmailConsumer
