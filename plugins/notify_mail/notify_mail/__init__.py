"""notify-mail: e-mail consumers for notifycore.

``SMTPConsumer`` needs only the standard library. The Flask consumers come
with extras and are imported on first use: ``FlaskMailConsumer`` with
``notify-mail[flask-mail]``, ``FlaskEmailConsumer`` with
``notify-mail[flask-email]``; without the extra, importing one says which
to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from notify_mail.message import MailConsumer, MailMessage
from notify_mail.smtp import SMTPConsumer

if TYPE_CHECKING:
    from notify_mail.flask_email import FlaskEmailConsumer
    from notify_mail.flask_mail import FlaskMailConsumer

__all__ = ["FlaskEmailConsumer", "FlaskMailConsumer", "MailConsumer", "MailMessage", "SMTPConsumer"]

_LAZY = {
    "FlaskMailConsumer": "notify_mail.flask_mail",
    "FlaskEmailConsumer": "notify_mail.flask_email",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'notify_mail' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
