"""SMTPConsumer: e-mail through the standard library's smtplib, for applications without Flask."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any, Self

from notify_mail.message import MailConsumer, MailMessage, classify_smtp_error
from notifycore import PermanentFailure
from notifycore.listeners import ListenerConfig

__all__ = ["SMTPConsumer"]


class SMTPConsumer(MailConsumer):
    """Sends with smtplib: plain, STARTTLS (``use_tls``) or SMTPS (``use_ssl``), with optional login.

    A batch (:meth:`send_many`) goes over one connection, reconnecting every
    ``max_emails`` messages. Other keyword arguments are :class:`MailConsumer`'s.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 25,
        *,
        use_tls: bool = False,
        use_ssl: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        max_emails: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if use_tls and use_ssl:
            raise ValueError("use_tls (STARTTLS) and use_ssl (SMTPS) exclude each other")
        self.host = host
        self.port = port
        self.use_tls = use_tls
        self.use_ssl = use_ssl
        self.username = username
        self.password = password
        self.timeout = timeout
        self.max_emails = max_emails
        self.ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SMTPConsumer({self.host}:{self.port})"

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **options: Any) -> Self:
        """Build from the ``MAIL_*`` settings (``notifications.settings``, a Flask config...)."""
        options.setdefault("sender", settings.get("MAIL_DEFAULT_SENDER"))
        return cls(
            settings.get("MAIL_SERVER") or "127.0.0.1",
            int(settings.get("MAIL_PORT") or 25),
            use_tls=bool(settings.get("MAIL_USE_TLS")),
            use_ssl=bool(settings.get("MAIL_USE_SSL")),
            username=settings.get("MAIL_USERNAME"),
            password=settings.get("MAIL_PASSWORD"),
            timeout=float(settings.get("MAIL_TIMEOUT") or 30.0),
            max_emails=settings.get("MAIL_MAX_EMAILS"),
            **options,
        )

    @classmethod
    def load_from_config(cls, config: ListenerConfig, prefix: str) -> Self:
        """Kinto's contract: the keys under ``prefix``, the ``MAIL_*`` settings as defaults.

        ``host``, ``port``, ``use_tls``, ``use_ssl``, ``username``, ``password``,
        ``timeout``, ``max_emails``, and the message's ``sender``, ``recipients``,
        ``subject``, ``body``, ``html``, ``html_safe_fields`` and ``attachments_field``.
        """
        settings = config.settings
        recipients = config.get_list(prefix + "recipients") or None
        options: dict[str, Any] = {
            "sender": config.get_str(prefix + "sender", settings.get("MAIL_DEFAULT_SENDER")),
            "recipients": recipients,
        }
        for key in ("subject", "body", "html", "attachments_field"):
            value = config.get_str(prefix + key)
            if value is not None:
                options[key] = value
        safe = config.get_list(prefix + "html_safe_fields")
        if safe:
            options["html_safe_fields"] = safe
        return cls(
            config.get_str(prefix + "host", settings.get("MAIL_SERVER") or "127.0.0.1"),
            config.get_int(prefix + "port", settings.get("MAIL_PORT") or 25, minimum=1),
            use_tls=config.get_bool(prefix + "use_tls", bool(settings.get("MAIL_USE_TLS"))),
            use_ssl=config.get_bool(prefix + "use_ssl", bool(settings.get("MAIL_USE_SSL"))),
            username=config.get_str(prefix + "username", settings.get("MAIL_USERNAME")),
            password=config.get_str(prefix + "password", settings.get("MAIL_PASSWORD")),
            timeout=config.get_float(prefix + "timeout", settings.get("MAIL_TIMEOUT") or 30.0),
            max_emails=config.get_int(
                prefix + "max_emails", settings.get("MAIL_MAX_EMAILS"), minimum=1
            ),
            **options,
        )

    def connect(self) -> smtplib.SMTP:
        """A logged-in connection (counted by tests through the server)."""
        context = self.ssl_context or ssl.create_default_context()
        host: smtplib.SMTP
        if self.use_ssl:
            host = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            host = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.use_tls:
                host.starttls(context=context)
            if self.username and self.password:
                host.login(self.username, self.password)
        except BaseException:
            host.close()
            raise
        return host

    def deliver(self, messages: list[MailMessage]) -> None:
        # Every message is built before the first is sent: a bad one sends none.
        try:
            built = [(m, m.to_email()) for m in messages]
        except (ValueError, TypeError) as error:
            raise PermanentFailure(f"the message cannot be built: {error}") from error
        connection: smtplib.SMTP | None = None
        sent = 0
        try:
            for message, email in built:
                if connection is None:
                    connection = self.connect()
                # The envelope takes bare addresses; the headers keep display names.
                connection.send_message(
                    email,
                    parseaddr(message.sender)[1],
                    [parseaddr(r)[1] for r in message.recipients],
                )
                sent += 1
                if self.max_emails and sent >= self.max_emails:
                    connection.quit()
                    connection, sent = None, 0
        except Exception as error:
            classified = classify_smtp_error(error)
            if classified is not error:
                raise classified from error
            raise
        finally:
            if connection is not None:
                try:
                    connection.quit()
                except (smtplib.SMTPException, OSError):
                    connection.close()
