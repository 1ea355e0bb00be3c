"""FlaskEmailConsumer: e-mail through flask-mailman, the Django mail API that Flask-Email offered.

Flask-Email itself is Python-2 only; flask-mailman is its maintained port.
As in Flask-Notifications, ``FlaskEmailConsumer.from_app(app, sender,
recipients)`` sets the extension up itself when the app has none
(``flask_mailman.Mail(app)``), keeps it as ``consumer.mail``, and sends
``Event <event_id>`` with the event's JSON as text unless ``subject=`` and
``body=`` say otherwise. The backend is selectable as flask-mailman
documents (``MAIL_BACKEND`` = ``smtp``, ``console``, ``file``, ``locmem``, or
a dotted path), or per consumer with ``backend=``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

try:
    from flask import Flask
    from flask_mailman import EmailMultiAlternatives, Mail
except ImportError as error:  # notify-mail installed without the extra
    raise ModuleNotFoundError(
        f"FlaskEmailConsumer needs Flask and flask-mailman ({error}): "
        "pip install 'notify-mail[flask-email]'",
        name=error.name,
    ) from error

from notify_mail.message import MailConsumer, MailMessage, classify_smtp_error
from notifycore import ConfigurationError

__all__ = ["FlaskEmailConsumer"]


class FlaskEmailConsumer(MailConsumer):
    """Sends through the flask-mailman extension of ``app`` (``app.extensions["mailman"]``)."""

    #: Flask-Notifications' subject and text: ``Event <id>`` and the event's JSON.
    default_subject = "Event {event_id}"
    default_body = "{event_json}"

    def __init__(
        self,
        app: Flask,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        *,
        backend: str | None = None,
        max_emails: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(sender=sender, recipients=recipients, **options)
        if not isinstance(app, Flask):
            raise ConfigurationError(
                f"FlaskEmailConsumer needs the Flask app, not {type(app).__name__}: "
                "FlaskEmailConsumer.from_app(app, sender, recipients)"
            )
        self.app = app
        extension = getattr(app, "extensions", {}).get("mailman")
        if extension is None:
            Mail(app)
            extension = app.extensions["mailman"]
        #: The app's flask-mailman state: the one it had, or the one ``Mail(app)`` made here.
        self.mail: Any = extension
        self.backend = backend
        self.max_emails = (
            max_emails if max_emails is not None else app.config.get("MAIL_MAX_EMAILS")
        )

    @classmethod
    def from_app(
        cls,
        app: Flask,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        **options: Any,
    ) -> Self:
        """The consumer for ``app``: its flask-mailman extension, set up here if it has none."""
        return cls(app, sender, recipients, **options)

    def __repr__(self) -> str:
        return f"FlaskEmailConsumer({self.app.name}, backend={self.backend or 'MAIL_BACKEND'})"

    def default_sender(self) -> str | None:
        sender = self.app.extensions["mailman"].default_sender
        return str(sender) if sender else None

    def deliver(self, messages: list[MailMessage]) -> None:
        size = self.max_emails or len(messages) or 1
        with self.app.app_context():
            state = self.app.extensions["mailman"]
            try:
                # One connection per MAIL_MAX_EMAILS messages.
                for start in range(0, len(messages), size):
                    connection = state.get_connection(backend=self.backend, fail_silently=False)
                    batch = [self._message(m, connection) for m in messages[start : start + size]]
                    # Opened and closed here: the smtp backend leaves its socket open when a
                    # send fails, if it opened it itself.
                    try:
                        connection.open()
                        connection.send_messages(batch)
                    finally:
                        connection.close()
            except Exception as error:
                classified = classify_smtp_error(error)
                if classified is not error:
                    raise classified from error
                raise

    @staticmethod
    def _message(message: MailMessage, connection: Any) -> EmailMultiAlternatives:
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=message.sender,
            to=list(message.recipients),
            connection=connection,
        )
        if message.html is not None:
            email.attach_alternative(message.html, "text/html")
        for attachment in message.attachments:
            email.attach(attachment.filename, attachment.data, attachment.content_type)
        return email
