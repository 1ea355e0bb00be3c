"""What every mail consumer shares: turning an event into a checked message, and errors.

:class:`MailConsumer` composes a :class:`MailMessage` from an event —
subject, text and optional HTML from templates over the event's fields,
recipients from the event (through a resolver) or a fixed list, attachments
from the event's ``attachments`` field — and hands messages to
:meth:`MailConsumer.deliver`, which each library's consumer implements.

Event fields are HTML-escaped in the ``html`` template, unless the consumer
names them in ``html_safe_fields``. A recipient is one address, never a list.

Errors: a message that can never be sent (a newline in a header, no address,
a recipient that is not one address, a template naming a missing field) and
a permanent SMTP answer (5xx) raise
:class:`~notifycore.PermanentFailure`, so a worker dead-letters the job at
once; temporary ones (4xx, refused connections, timeouts) are raised as they
are, and the worker retries them with back-off.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import re
import smtplib
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from notifycore import ConfigurationError, Consumer, Event, PermanentFailure

logger = logging.getLogger("notify_mail")

__all__ = ["Attachment", "MailConsumer", "MailMessage", "classify_smtp_error", "default_resolver"]

Resolver = Callable[[str], str | None]


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass
class MailMessage:
    """A composed, checked message, independent of the library that sends it."""

    subject: str
    sender: str
    recipients: list[str]
    text: str
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)

    def to_email(self) -> EmailMessage:
        """The standard library's message (what SMTPConsumer sends)."""
        message = EmailMessage()
        message["Subject"] = self.subject
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="notifycore")
        message.set_content(self.text)
        if self.html is not None:
            message.add_alternative(self.html, subtype="html")
        for attachment in self.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            message.add_attachment(
                attachment.data,
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=attachment.filename,
            )
        return message


def default_resolver(recipient: str) -> str | None:
    """A recipient that looks like an address is its own address; others have none."""
    return recipient if "@" in recipient else None


class _FieldsOnly(string.Formatter):
    """str.format over an event's fields, without attribute or index lookups."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if not field_name.isidentifier():
            raise PermanentFailure(
                f"template field {field_name!r} is not allowed: use plain field names"
            )
        if field_name not in kwargs:
            raise PermanentFailure(
                f"the template names {field_name!r}, which the event does not have"
            )
        return kwargs[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value)
        elif value is None:
            value = ""
        return str(format(value, format_spec))


class _Raw:
    """A field the consumer's ``html_safe_fields`` names: inserted into HTML as it is."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _HtmlFields(_FieldsOnly):
    """The HTML template's formatter: every field's text is escaped, but the safe ones'."""

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if isinstance(value, _Raw):
            return _Raw(super().convert_field(value.value, conversion))
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, _Raw):
            return super().format_field(value.value, format_spec)
        # Escaped after formatting, so that a width or precision never cuts an entity.
        return html.escape(super().format_field(value, format_spec), quote=True)


_formatter = _FieldsOnly()
_html_formatter = _HtmlFields()

# One mailbox: local@domain, or a display name (plain, or quoted) and <local@domain>.
# No comma, semicolon, colon or second address: a list or a group smuggled into one
# recipient would reach every address in it.
_ATOM = r"[^\s@,;:<>()\[\]\\\"]+"
_ADDRESS = rf"{_ATOM}@{_ATOM}"
_MAILBOX = re.compile(rf'{_ADDRESS}|(?:"(?:[^"\\]|\\.)*"|[^",;:<>@()\[\]\\]*?)\s*<{_ADDRESS}>')


def _check_address(address: str) -> str:
    """``address`` if it is one e-mail address, else :class:`PermanentFailure`."""
    _check_header("recipient", address)
    if not _MAILBOX.fullmatch(address.strip()):
        shown = address if len(address) <= 100 else address[:97] + "..."
        raise PermanentFailure(
            f"recipient {shown!r} is not one e-mail address (a list, a group or a second "
            "address in one recipient is refused)"
        )
    return address


def _check_header(name: str, value: str) -> str:
    # Every character str.splitlines() breaks on (\x0b, \x0c, \x1c-\x1e, \x85, \u2028...)
    # ends a header line for some mail library, and no control character belongs in one.
    if len(value.splitlines()) > 1 or any(unicodedata.category(ch) == "Cc" for ch in value):
        raise PermanentFailure(
            f"a newline in the {name} header was refused (header injection): "
            "no line break or control character may appear in a header"
        )
    return value


def _attachments(event: Event, field_name: str) -> list[Attachment]:
    raw = event.get(field_name)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise PermanentFailure(f"the event's {field_name!r} must be a list of attachments")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
            raise PermanentFailure(
                "each attachment needs a 'filename' and 'content' or 'content_base64'"
            )
        filename = _check_header("attachment filename", item["filename"])
        content_type = _check_header(
            "attachment content type", str(item.get("content_type", "application/octet-stream"))
        )
        if "content_base64" in item:
            try:
                data = base64.b64decode(item["content_base64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise PermanentFailure(
                    f"attachment {filename!r}: content_base64 is not base64"
                ) from None
        elif isinstance(item.get("content"), str):
            data = item["content"].encode("utf-8")
        else:
            raise PermanentFailure(f"attachment {filename!r} has no content")
        out.append(Attachment(filename, content_type, data))
    return out


def classify_smtp_error(error: BaseException) -> BaseException:
    """A permanent SMTP answer (5xx) as PermanentFailure with the server's words; others unchanged."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        answers = {
            r: (c, m.decode(errors="replace") if isinstance(m, bytes) else str(m))
            for r, (c, m) in error.recipients.items()
        }
        if answers and all(code >= 500 for code, _ in answers.values()):
            detail = "; ".join(f"{r}: {c} {m}" for r, (c, m) in answers.items())
            return PermanentFailure(f"the server refused every recipient: {detail}")
        return error
    if isinstance(error, smtplib.SMTPResponseException) and error.smtp_code >= 500:
        answer = (
            error.smtp_error.decode(errors="replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        return PermanentFailure(f"the SMTP server answered {error.smtp_code} {answer}")
    return error


class MailConsumer(Consumer):
    """Base class of the mail consumers: composes messages; subclasses deliver them.

    ``subject``, ``body`` and ``html`` are ``str.format`` templates over the
    event's fields (``{title}``, ``{sender}``, ``{colour}`` for an extra
    field) and ``{event_json}``, the whole event as JSON (unless the event has
    a field of that name); ``html=None`` sends text only. Without them, the
    class's :attr:`default_subject` and :attr:`default_body` apply. ``recipients`` is a fixed list of
    addresses; without it the event's recipients are mapped to addresses by
    ``resolver`` (a callable or a mapping; by default a recipient containing
    ``@`` is its own address). ``attachments_field`` names the event field
    holding ``[{"filename", "content_type", "content" | "content_base64"}]``.

    In ``html`` every field is HTML-escaped (``<``, ``>``, ``&``, quotes), so
    an event's text cannot add markup; ``html_safe_fields`` names the fields
    that hold HTML the application made (``("body_html",)``), inserted as they
    are. Every recipient must be one address: ``a@x, b@y`` is refused.
    """

    #: The subject template when none is given (the Flask consumers keep Flask-Notifications').
    default_subject = "{title}"
    #: The text template when none is given.
    default_body = "{body}"

    def __init__(
        self,
        *,
        sender: str | None = None,
        recipients: Iterable[str] | None = None,
        resolver: Resolver | Mapping[str, str] | None = None,
        subject: str | None = None,
        body: str | None = None,
        html: str | None = None,
        html_safe_fields: Iterable[str] = (),
        attachments_field: str = "attachments",
    ) -> None:
        self.sender = sender
        self.recipients = list(recipients) if recipients is not None else None
        if isinstance(html_safe_fields, str):
            raise ConfigurationError("html_safe_fields is a list of field names, not a string")
        self.html_safe_fields = frozenset(html_safe_fields)
        if isinstance(resolver, Mapping):
            table = dict(resolver)
            self.resolver: Resolver = table.get
        else:
            self.resolver = resolver or default_resolver
        self.subject_template = self.default_subject if subject is None else subject
        self.body_template = self.default_body if body is None else body
        self.html_template = html
        self.attachments_field = attachments_field

    def default_sender(self) -> str | None:
        """The sender when the consumer names none (subclasses read their library's setting)."""
        return None

    def compose(self, event: Event) -> MailMessage:
        """The message for ``event``; :class:`PermanentFailure` when it can never be sent."""
        fields = dict(event)
        fields.setdefault("event_json", event.to_json())
        sender = self.sender or self.default_sender()
        if not sender:
            raise PermanentFailure("no sender: pass sender= or set MAIL_DEFAULT_SENDER")
        addresses: list[str] = []
        if self.recipients is not None:
            addresses = list(self.recipients)
        else:
            missing: list[str] = []
            for recipient in event.recipients:
                address = self.resolver(recipient)
                (addresses if address else missing).append(address or recipient)
            if not addresses:
                raise PermanentFailure(
                    f"no e-mail address for the event's recipients {list(event.recipients)}"
                )
            if missing:
                logger.warning("no e-mail address for %s; mailing the others", ", ".join(missing))
        for address in addresses:
            _check_address(address)
        subject = _formatter.vformat(self.subject_template, (), fields)
        return MailMessage(
            subject=_check_header("subject", subject),
            sender=_check_header("sender", sender),
            recipients=addresses,
            text=_formatter.vformat(self.body_template, (), fields),
            html=None if self.html_template is None else self._html(fields),
            attachments=_attachments(event, self.attachments_field),
        )

    def _html(self, fields: dict[str, Any]) -> str:
        assert self.html_template is not None
        safe = self.html_safe_fields
        if safe:
            fields = {k: _Raw(v) if k in safe else v for k, v in fields.items()}
        return _html_formatter.vformat(self.html_template, (), fields)

    def consume(self, event: Event) -> None:
        self.deliver([self.compose(event)])

    def send_many(self, events: Iterable[Event]) -> int:
        """Compose every event first, then send them as one batch; returns how many were sent."""
        messages = [self.compose(event) for event in events]
        self.deliver(messages)
        return len(messages)

    def deliver(self, messages: list[MailMessage]) -> None:
        """Send ``messages`` over as few connections as the library allows."""
        raise NotImplementedError
