"""Composing messages from events: templates, recipients, attachments, header checks."""

from __future__ import annotations

import base64

import pytest

from notify_mail import MailConsumer
from notifycore import Event, PermanentFailure


def consumer(**options: object) -> MailConsumer:
    options.setdefault("sender", "noreply@example.org")
    return MailConsumer(**options)  # type: ignore[arg-type]


def test_defaults_title_as_subject_body_as_text_recipients_from_the_event() -> None:
    message = consumer().compose(
        Event(
            None,
            "t",
            "Réunion à 10h ✓",
            "Corps\nsur deux lignes",
            recipients=["a@example.org", "b@example.org"],
        )
    )
    assert message.subject == "Réunion à 10h ✓"
    assert message.text == "Corps\nsur deux lignes"
    assert message.html is None
    assert message.recipients == ["a@example.org", "b@example.org"]


def test_templates_over_event_fields() -> None:
    mail = consumer(
        subject="[{event_type}] {title} from {sender}",
        body="{body} (room {room}) to {recipients}",
        html="<p>{body}</p>",
    )
    message = mail.compose(
        Event(None, "comment", "Hi", "Text", sender="ann", recipients=["x@y.z"], room=7)
    )
    assert message.subject == "[comment] Hi from ann"
    assert message.text == "Text (room 7) to x@y.z"
    assert message.html == "<p>Text</p>"


@pytest.mark.parametrize("template", ["{title.__class__}", "{recipients[0]}", "{missing}"])
def test_templates_cannot_reach_beyond_fields(template: str) -> None:
    with pytest.raises(PermanentFailure):
        consumer(subject=template).compose(Event(None, "t", "x", recipients=["a@b.c"]))


def test_resolvers_and_fixed_recipients() -> None:
    event = Event(None, "t", recipients=["alice", "bob", "carol@example.org"])
    table = consumer(resolver={"alice": "alice@example.org"}).compose(event)
    assert table.recipients == ["alice@example.org"]
    function = consumer(resolver=lambda user: f"{user}@corp.example" if "@" not in user else user)
    assert function.compose(event).recipients == [
        "alice@corp.example",
        "bob@corp.example",
        "carol@example.org",
    ]
    assert consumer().compose(event).recipients == ["carol@example.org"]
    fixed = consumer(recipients=["admin@example.org"]).compose(Event(None, "t"))
    assert fixed.recipients == ["admin@example.org"]
    with pytest.raises(PermanentFailure, match="no e-mail address"):
        consumer().compose(Event(None, "t", recipients=["alice"]))


@pytest.mark.parametrize(
    ("kwargs", "event_kwargs", "header"),
    [
        ({}, {"title": "Hi\nBcc: victim@example.org"}, "subject"),
        ({}, {"title": "Hi\r\nX-Evil: 1"}, "subject"),
        ({"sender": "me@example.org\nBcc: x@y.z"}, {}, "sender"),
        # (An event's own recipient cannot hold a newline: Event refuses control characters.)
        ({"resolver": lambda user: "a@b.c\nBcc: x@y.z"}, {"recipients": ["bob"]}, "recipient"),
        ({"recipients": ["ok@b.c", "a@b.c\r\n"]}, {}, "recipient"),
    ],
)
def test_newlines_in_headers_are_refused(
    kwargs: dict[str, object], event_kwargs: dict[str, object], header: str
) -> None:
    event_kwargs.setdefault("recipients", ["a@b.c"])
    with pytest.raises(PermanentFailure, match=f"newline in the {header}"):
        consumer(**kwargs).compose(Event(None, "t", **event_kwargs))  # type: ignore[arg-type]


def test_attachments_from_the_event() -> None:
    png = bytes(range(256))
    event = Event(
        None,
        "t",
        recipients=["a@b.c"],
        attachments=[
            {"filename": "notes.txt", "content_type": "text/plain", "content": "héllo"},
            {
                "filename": "pixel.png",
                "content_type": "image/png",
                "content_base64": base64.b64encode(png).decode(),
            },
        ],
    )
    message = consumer().compose(event)
    assert [(a.filename, a.content_type, a.data) for a in message.attachments] == [
        ("notes.txt", "text/plain", "héllo".encode()),
        ("pixel.png", "image/png", png),
    ]
    for bad in (
        [{"filename": "x"}],
        [{"filename": "x", "content_base64": "!!"}],
        "not a list",
        [{"content": "x"}],
    ):
        with pytest.raises(PermanentFailure):
            consumer().compose(Event(None, "t", recipients=["a@b.c"], attachments=bad))


def test_a_sender_is_required() -> None:
    with pytest.raises(PermanentFailure, match="no sender"):
        MailConsumer().compose(Event(None, "t", recipients=["a@b.c"]))


@pytest.mark.parametrize(
    "breaker", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\x00"]
)
def test_every_line_break_and_control_character_is_refused(breaker: str) -> None:
    title = f"Hi{breaker}Reply-To: attacker@evil.example"
    with pytest.raises(PermanentFailure, match="newline in the subject"):
        consumer().compose(Event(None, "t", title, recipients=["a@b.c"]))
    with pytest.raises(PermanentFailure, match="attachment filename"):
        consumer().compose(
            Event(
                None,
                "t",
                recipients=["a@b.c"],
                attachments=[{"filename": f"a{breaker}b", "content": "x"}],
            )
        )
