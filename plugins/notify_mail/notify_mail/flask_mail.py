"""FlaskMailConsumer: e-mail through Flask-Mail, reusing the app's ``app.extensions["mail"]``.

Everything Flask-Mail documents applies: the ``MAIL_*`` settings,
``MAIL_SUPPRESS_SEND`` (on by default when ``TESTING``), ``MAIL_MAX_EMAILS``
and ``mail.record_messages()``.
"""

from __future__ import annotations

from typing import Any, Self

try:
    from flask import Flask
    from flask_mail import BadHeaderError, Message
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

    def __init__(self, app: Flask, **options: Any) -> None:
        super().__init__(**options)
        if "mail" not in getattr(app, "extensions", {}):
            raise ConfigurationError("Flask-Mail is not set up on this app: call Mail(app) first")
        self.app = app

    @classmethod
    def from_app(cls, app: Flask, **options: Any) -> Self:
        """The consumer for ``app``, reusing its ``app.extensions["mail"]``."""
        return cls(app, **options)

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
