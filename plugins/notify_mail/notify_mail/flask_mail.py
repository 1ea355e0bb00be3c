"""FlaskMailConsumer: e-mail through Flask-Mail, as Flask-Notifications' consumer of that name.

``FlaskMailConsumer.from_app(app, sender, recipients)`` works as it did in
Flask-Notifications: it uses the app's Flask-Mail extension, or sets one up
(``Mail(app)``) when the app has none, and keeps it as ``consumer.mail``; a
message's subject is ``Event <event_id>`` and its text the event's JSON unless
``subject=`` and ``body=`` templates say otherwise.

Everything Flask-Mail documents applies: the ``MAIL_*`` settings,
``MAIL_SUPPRESS_SEND`` (on by default when ``TESTING``), ``MAIL_MAX_EMAILS``
and ``consumer.mail.record_messages()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

try:
    from flask import Flask
    from flask_mail import BadHeaderError, Mail, Message
except ImportError as error:  # notify-mail installed without the extra
    raise ModuleNotFoundError(
        f"FlaskMailConsumer needs Flask and Flask-Mail ({error}): "
        "pip install 'notify-mail[flask-mail]'",
        name=error.name,
    ) from error

from notify_mail.message import MailConsumer, MailMessage, classify_smtp_error
from notifycore import ConfigurationError, PermanentFailure

__all__ = ["FlaskMailConsumer"]


class FlaskMailConsumer(MailConsumer):
    """Sends through the Flask-Mail extension of ``app`` (see :meth:`from_app`)."""

    #: Flask-Notifications' subject and text: ``Event <id>`` and the event's JSON.
    default_subject = "Event {event_id}"
    default_body = "{event_json}"

    def __init__(
        self,
        app: Flask,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(sender=sender, recipients=recipients, **options)
        if not isinstance(app, Flask):
            raise ConfigurationError(
                f"FlaskMailConsumer needs the Flask app, not {type(app).__name__}: "
                "FlaskMailConsumer.from_app(app, sender, recipients)"
            )
        self.app = app
        extension = getattr(app, "extensions", {}).get("mail")
        #: The app's Flask-Mail: the one it had, or ``Mail(app)`` made here when it had none.
        self.mail: Any = extension if extension is not None else Mail(app)

    @classmethod
    def from_app(
        cls,
        app: Flask,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        **options: Any,
    ) -> Self:
        """The consumer for ``app``: its Flask-Mail extension, set up here if it has none."""
        return cls(app, sender, recipients, **options)

    def __repr__(self) -> str:
        return f"FlaskMailConsumer({self.app.name})"

    def default_sender(self) -> str | None:
        sender = self.app.extensions["mail"].default_sender
        return str(sender) if sender else None

    def _message(self, message: MailMessage) -> Message:
        flask_message = Message(
            subject=message.subject,
            recipients=list(message.recipients),
            body=message.text,
            html=message.html,
            sender=message.sender,
        )
        for attachment in message.attachments:
            flask_message.attach(attachment.filename, attachment.content_type, attachment.data)
        return flask_message

    def deliver(self, messages: list[MailMessage]) -> None:
        with self.app.app_context():
            state = self.app.extensions["mail"]
            try:
                # One connection for the batch; Flask-Mail reconnects every MAIL_MAX_EMAILS.
                with state.connect() as connection:
                    for message in messages:
                        connection.send(self._message(message))
            except BadHeaderError as error:
                raise PermanentFailure("Flask-Mail refused a header (header injection)") from error
            except Exception as error:
                classified = classify_smtp_error(error)
                if classified is not error:
                    raise classified from error
                raise
