"""notify-mail: e-mail consumers for notifycore.

The Flask consumers import Flask-Mail or flask-mailman only when their module
is imported, through the ``flask_mail`` and ``flask_email`` entry points.
"""

from notify_mail.message import MailConsumer, MailMessage
from notify_mail.smtp import SMTPConsumer

__all__ = ["MailConsumer", "MailMessage", "SMTPConsumer"]
