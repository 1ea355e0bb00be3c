"""A Kinto-style listener module: ``use = examples.kinto_email_listener.kinto_email``.

notifycore calls :func:`load_from_config` with the listener's prefix
(``listeners.send_email.``), as Kinto does; the listener reads its own
settings under it. It runs inline, inside ``send()``: the request that
created the record returns once the mail was handed to the SMTP server.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from notifycore import Consumer, Event, ListenerConfig


class Listener(Consumer):
    """Sends one plain-text mail per event to the configured recipients."""

    def __init__(
        self,
        server: str,
        tls: bool,
        username: str | None,
        password: str | None,
        sender: str,
        recipients: list[str],
    ) -> None:
        host, _, port = server.rpartition(":")
        self.host, self.port = (host, int(port)) if host else (server, 25)
        self.tls = tls
        self.username = username
        self.password = password
        self.sender = sender
        self.recipients = recipients

    def __repr__(self) -> str:
        return f"Listener({self.host}:{self.port} to {', '.join(self.recipients)})"

    def consume(self, event: Event) -> None:
        message = EmailMessage()
        message["Subject"] = f"{event['resource']} {event['action']}d"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(f"User id: {event.sender}\nURI: {event.get('uri', '')}\n")
        with smtplib.SMTP(self.host, self.port, timeout=30) as server:
            if self.tls:
                server.starttls()
            if self.username and self.password:
                server.login(self.username, self.password)
            server.send_message(message)


def load_from_config(config: ListenerConfig, prefix: str = "") -> Listener:
    """Kinto's contract: read the settings under ``prefix`` and build the listener."""
    recipients = config.get_list(prefix + "recipients")
    if not recipients:
        raise ValueError(f"{prefix}recipients must name at least one address")
    return Listener(
        server=config.get_str(prefix + "server", "127.0.0.1:25"),
        tls=config.get_bool(prefix + "tls", False),
        username=config.get_str(prefix + "username") or None,
        password=config.get_str(prefix + "password") or None,
        sender=config.get_str(prefix + "from", "postmaster@localhost"),
        recipients=recipients,
    )
