"""The plugin module: the MAIL_* settings that SMTPConsumer.from_settings() reads."""

from __future__ import annotations

from collections.abc import Callable

from notifycore import Setting, hookimpl

SETTINGS = (
    Setting("MAIL_SERVER", str, "127.0.0.1", "SMTP server host."),
    Setting("MAIL_PORT", int, 25, "SMTP server port.", minimum=1),
    Setting("MAIL_USE_TLS", bool, False, "Upgrade the connection with STARTTLS."),
    Setting("MAIL_USE_SSL", bool, False, "Connect with SSL/TLS from the start (SMTPS)."),
    Setting("MAIL_USERNAME", str, None, "Login name, if the server needs one.", nullable=True),
    Setting(
        "MAIL_PASSWORD",
        str,
        None,
        "Login password, if the server needs one.",
        nullable=True,
        secret=True,
    ),
    Setting(
        "MAIL_DEFAULT_SENDER", str, None, "From address when a consumer names none.", nullable=True
    ),
    Setting(
        "MAIL_MAX_EMAILS",
        int,
        None,
        "Messages per SMTP connection before reconnecting.",
        nullable=True,
    ),
    Setting(
        "MAIL_TIMEOUT", float, 30.0, "Seconds before an SMTP operation times out.", minimum=0.1
    ),
)


@hookimpl
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    for setting in SETTINGS:
        register(setting)
