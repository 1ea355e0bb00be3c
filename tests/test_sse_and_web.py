"""SSE framing and the access rules the web adapters share."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifycore import (
    ConfigurationError,
    Event,
    InvalidStreamId,
    Notifications,
    PushConsumer,
    UnknownHub,
    hookimpl,
)
from notifycore.backends.base import MAX_STREAM_ID_LENGTH, StreamMessage, StreamRead
from notifycore.plugins import get_plugins
from notifycore.web.access import (
    Access,
    client_stream_id,
    cross_site_refusal,
    is_json,
    principal_id,
    resume_id,
    stream_for_hub,
)
from notifycore.web.protocol import Reply
from notifycore.web.sse import FrameCache, comment, event_type_of, frame, reset_frame, retry_frame


def test_frames_carry_id_event_and_data_and_cannot_be_injected() -> None:
    data = b'{"event_type":"chat","title":"hi\\nthere"}'
    assert (
        frame("5", "chat", data)
        == b'id: 5\nevent: chat\ndata: {"event_type":"chat","title":"hi\\nthere"}\n\n'
    )
    hostile = b"line one\n\nid: 999\nevent: admin\r\ndata: owned"
    out = frame("6", "chat\nevent: x", hostile).decode()
    assert out.count("\n\n") == 1 and out.endswith("\n\n"), "one frame, whatever the data holds"
    assert "\nid: 999" not in out and "data: id: 999" in out
    assert out.startswith("id: 6\nevent: chat event: x\n")
    assert comment("ping") == b": ping\n\n"
    assert retry_frame(3000) == b"retry: 3000\n\n"
    assert b"event: reset" in reset_frame("event-hub-H", "7")


def test_event_types_and_the_frame_cache() -> None:
    e = Event(None, "comment", "t")
    assert event_type_of(e.to_json_bytes()) == "comment"
    assert event_type_of(b"not json") == "message"
    cache = FrameCache(size=2)
    message = StreamMessage("1", e.to_json_bytes())
    first = cache.get("s", message)
    assert cache.get("s", message) is first and cache.made == 1
    cache.get("s", StreamMessage("2", b"{}"))
    cache.get("s", StreamMessage("3", b"{}"))
    assert cache.get("s", message) == first and cache.made == 4, "evicted, then made again"


def test_the_frame_cache_keeps_recent_batches_joined() -> None:
    # Clients catching up after a burst write several recent batches in one go: each batch
    # is joined once, however many clients write it, until `size` newer batches came.
    cache = FrameCache(size=3)
    batches = [StreamRead([StreamMessage(f"{i}-{j}", b"{}") for j in (1, 2)]) for i in range(4)]
    chunks = [cache.batch("s", b) for b in batches[:3]]
    assert all(cache.batch("s", b) is c for b, c in zip(batches[:3], chunks, strict=True))
    cache.batch("s", batches[3])
    assert cache.batch("s", batches[0]) is not chunks[0], "the oldest was evicted: joined again"
    assert cache.batch("s", batches[0]) == chunks[0]


def test_principals_and_resume_ids() -> None:
    class User:
        id = 42

    assert principal_id("alice") == "alice"
    assert principal_id({"id": 7}) == "7"
    assert principal_id(User()) == "42"
    assert principal_id(None) is None
    # Any scalar id, itself or as the id: the same text for user:<id> and for the sender.
    uid = uuid.UUID(int=5)
    assert principal_id(42) == principal_id({"id": 42}) == principal_id(User()) == "42"
    assert principal_id(uid) == principal_id({"id": uid}) == str(uid)
    for nothing in (True, False, "", "  ", {"id": None}, {"id": ""}, {"id": True}, object()):
        assert principal_id(nothing) is None, nothing
    assert resume_id("12", "9") == "12"
    assert resume_id(None, "9") == "9"
    assert resume_id(" ", None) is None
    assert resume_id(" 7 ", None) == "7"
    longest = "1" * MAX_STREAM_ID_LENGTH
    assert resume_id(longest, None) == longest and client_stream_id(longest) == longest
    with pytest.raises(InvalidStreamId, match="Last-Event-ID is longer than 64"):
        resume_id(longest + "1", None)
    with pytest.raises(InvalidStreamId, match="lastEventId"):
        resume_id(None, "9" * 5000)
    with pytest.raises(InvalidStreamId, match="since"):
        client_stream_id("9" * 65, "since")


def test_access_rules() -> None:
    n = Notifications(config={"BACKEND": "memory"}, environ={})
    n.create_hub("Chat")
    assert stream_for_hub(n, "event-hub-Chat") == "event-hub-Chat"
    with pytest.raises(UnknownHub):
        stream_for_hub(n, "event-hub-Nope")
    open_access = Access(n)
    assert open_access.allows(None, "event-hub-Chat"), "no auth configured: open"
    closed = Access(n, authenticate=lambda request: request)
    assert not closed.allows("bob", "event-hub-Chat"), "auth configured: closed by default"
    assert closed.allows("bob", "user:bob") and not closed.allows("bob", "user:alice")
    assert closed.user_stream("bob") == "user:bob" and closed.user_stream(None) is None
    custom = Access(n, authorize=lambda principal, stream: principal == "admin")
    assert custom.allows("admin", "user:bob") and not custom.allows("bob", "user:alice")
    assert custom.allows("bob", "user:bob"), "the owner always reads their own stream"

    class Plugin:
        @hookimpl
        def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
            return True if stream == "event-hub-Chat" and principal == "staff" else None

    get_plugins().register(Plugin(), name="authz")
    try:
        hooked = Access(n)
        assert hooked.configured
        assert hooked.allows("staff", "event-hub-Chat")
        assert not hooked.allows("guest", "event-hub-Chat")
    finally:
        get_plugins().unregister(name="authz")
    n.close()


def test_sending_with_authorize_send() -> None:
    n = Notifications(config={"BACKEND": "memory"}, environ={})
    claims: list[tuple[Any, str]] = []

    def authorize_send(principal: Any, event: Event) -> bool:
        claims.append((principal, event.sender))
        return bool(principal == "admin" or event.sender == principal)

    access = Access(n, authorize_send=authorize_send)
    assert access.configured
    unsigned = Event(None, "chat", "x")
    assert access.sendable("bob", unsigned) == unsigned.replace(sender="bob")
    assert access.sendable("bob", unsigned.replace(sender="system")) is None
    admin = access.sendable("admin", unsigned.replace(sender="system"))
    assert admin is not None and admin.sender == "system"
    assert access.sendable(None, unsigned) is None
    assert claims == [("bob", "bob"), ("bob", "system"), ("admin", "system"), (None, "")]
    n.close()


def test_sending_with_the_send_permission_is_as_the_principal() -> None:
    n = Notifications(config={"BACKEND": "memory"}, environ={})
    forged = Event(None, "chat", "x", sender="system")
    older = Access(
        n, authorize=lambda principal, stream: stream == "send" and principal is not None
    )
    assert older.sendable("bob", forged) == forged.replace(sender="bob")
    assert older.sendable(None, forged) is None
    assert older.sendable(42, forged) == forged.replace(sender="42")
    assert older.sendable(uuid.UUID(int=1), forged) == forged.replace(sender=str(uuid.UUID(int=1)))
    public = Access(n, authorize=lambda principal, stream: stream == "send")
    assert public.sendable(None, forged) == forged.replace(sender=""), "no id: no sender"
    assert public.sendable(object(), forged) == forged.replace(sender="")
    open_access = Access(n)
    assert open_access.sendable(None, forged) == forged, "nothing configured: anyone, as written"
    seven = open_access.sendable({"id": 7}, forged)
    assert seven is not None and seven.sender == "7"
    closed = Access(n, authenticate=lambda request: request)
    assert closed.sendable("bob", forged) is None, "authentication alone allows no sending"
    n.close()


def test_the_authorize_send_hook_then_the_send_permission() -> None:
    n = Notifications(config={"BACKEND": "memory"}, environ={})

    class Plugin:
        @hookimpl
        def notifycore_authorize_send(self, principal: Any, event: Event) -> bool | None:
            return None if event.event_type == "ask-the-other" else event.sender == principal

        @hookimpl
        def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
            return stream == "send"

    get_plugins().register(Plugin(), name="send-authz")
    try:
        hooked = Access(n)
        assert hooked.configured
        bob = hooked.sendable("bob", Event(None, "t", "x"))
        assert bob is not None and bob.sender == "bob"
        assert hooked.sendable("bob", Event(None, "t", "x", sender="ann")) is None
        fallback = hooked.sendable("bob", Event(None, "ask-the-other", "x", sender="ann"))
        assert fallback is not None and fallback.sender == "bob"
        # An app's own callable is asked before any plugin (which would refuse this one).
        own = Access(n, authorize_send=lambda principal, event: True)
        as_ann = own.sendable("bob", Event(None, "t", "x", sender="ann"))
        assert as_ann is not None and as_ann.sender == "ann"
    finally:
        get_plugins().unregister(name="send-authz")
    n.close()


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),
        ({"origin": "http://app.test"}, False),
        ({"origin": "HTTP://APP.TEST"}, False),
        ({"origin": "http://app.test:80", "host": "app.test"}, False),
        ({"origin": "https://app.test:443", "host": "app.test"}, False),
        ({"origin": "https://app.test", "host": "app.test:443"}, False),
        ({"fetch_site": "same-origin"}, False),
        ({"fetch_site": "none"}, False),
        ({"origin": "https://partner.test", "fetch_site": "cross-site"}, False),
        ({"origin": "http://evil.test"}, True),
        ({"origin": "http://app.test.evil.test"}, True),
        ({"origin": "http://app.test:8080"}, True),
        ({"origin": "null"}, True),
        ({"origin": "not a url"}, True),
        ({"fetch_site": "cross-site"}, True),
        ({"fetch_site": "Cross-Site"}, True),
        ({"origin": "http://app.test", "fetch_site": "cross-site"}, True),
        ({"origin": "http://evil.test", "authorization": "Bearer t"}, False),
        ({"origin": "http://evil.test", "authorization": "Basic eDp5"}, True),
        ({"origin": "http://[::1]:8000", "host": "[::1]:8000"}, False),
        ({"origin": "http://[::1]:8001", "host": "[::1]:8000"}, True),
        # The scheme, when the adapter gives it, is part of the origin.
        ({"origin": "http://app.test", "scheme": "http"}, False),
        ({"origin": "https://app.test", "scheme": "http"}, True),
        ({"origin": "http://app.test", "scheme": "https"}, True),
        ({"origin": "https://app.test", "scheme": "HTTPS"}, False),
        ({"origin": "http://app.test", "scheme": "ws"}, False),
        ({"origin": "https://app.test", "scheme": "wss"}, False),
        ({"origin": "https://app.test", "scheme": "ws"}, True),
        ({"origin": "http://app.test:443", "host": "app.test", "scheme": "http"}, True),
        ({"origin": "https://app.test:443", "host": "app.test", "scheme": "https"}, False),
        # A token exempts a request that carries no cookie, never one that does.
        ({"origin": "http://evil.test", "query_token": True}, False),
        ({"origin": "http://evil.test", "authorization": "Bearer t", "cookie": "sid=1"}, True),
        ({"origin": "http://evil.test", "query_token": True, "cookie": "sid=1"}, True),
        ({"fetch_site": "cross-site", "authorization": "Bearer t", "cookie": "a=b"}, True),
        ({"origin": "http://evil.test", "authorization": "Bearer t", "cookie": " "}, False),
        ({"origin": "http://app.test", "authorization": "Bearer t", "cookie": "sid=1"}, False),
        ({"origin": "https://partner.test", "cookie": "sid=1"}, False),
    ],
)
def test_cross_site_refusal(headers: dict[str, str], refused: bool) -> None:
    arguments: dict[str, Any] = {
        "authorization": None,
        "origin": None,
        "fetch_site": None,
        "host": "app.test",
        **headers,
    }
    reason = cross_site_refusal(**arguments, trusted_origins=["https://partner.test/"])
    assert (reason is not None) is refused, reason


def test_json_content_types() -> None:
    assert is_json("application/json") and is_json("Application/JSON; charset=utf-8")
    for other in (None, "", "text/plain", "application/jsonx", "multipart/form-data; x=1"):
        assert not is_json(other)


def test_push_consumer_options_that_would_lose_private_events_are_refused() -> None:
    assert repr(PushConsumer()) == "PushConsumer(per_recipient=True)"
    assert repr(PushConsumer(broadcast_private=True)) == (
        "PushConsumer(per_recipient=True, broadcast_private=True)"
    )
    with pytest.raises(ConfigurationError, match="per_recipient=False would publish"):
        PushConsumer(per_recipient=False)
    with pytest.raises(ConfigurationError, match="hub_stream=False turns off"):
        PushConsumer(hub_stream=False, broadcast_private=True)
    PushConsumer(per_recipient=False, broadcast_private=True)
    PushConsumer(hub_stream=False)


@pytest.mark.parametrize(
    "payload",
    [
        {"event_id": "e1", "hubs": ["a", "b"], "outcomes": [{"hub": "a", "status": "ran"}]},
        {"error": "invalid_event", "message": "caf\u00e9 \ud800 \u2028", "field": None},
        {"n": 1.5, "big": 2**70, "nested": {"list": [True, False, None]}},
    ],
)
def test_a_json_reply_is_ascii_compact_json(payload: Any) -> None:
    reply = Reply.json(400, payload, {"X-Extra": "1"})
    assert reply.body == json.dumps(payload, separators=(",", ":")).encode()
    assert reply.body.isascii(), "a lone surrogate is escaped, never an encoding error"
    assert dict(reply.headers) == {"Content-Type": "application/json", "X-Extra": "1"}


def _frame_line_by_line(message_id: str, event_type: str | None, data: bytes) -> bytes:
    """What frame() makes, written the plain way: every line of the data split out."""
    text = data.decode("utf-8", errors="replace")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    body = "".join(f"data: {line}\n" for line in lines)
    name = (
        ""
        if event_type is None
        else f"event: {event_type.replace(chr(13), ' ').replace(chr(10), ' ')}\n"
    )
    return f"id: {message_id.replace(chr(13), ' ').replace(chr(10), ' ')}\n{name}{body}\n".encode()


@given(
    data=st.binary(max_size=60)
    | st.text(alphabet=st.sampled_from('ab{}":\r\n\u2028\xe9'), max_size=40).map(str.encode),
    event_type=st.none() | st.text(max_size=10),
)
def test_a_frame_is_the_data_line_by_line_whatever_it_holds(
    data: bytes, event_type: str | None
) -> None:
    assert frame("7", event_type, data) == _frame_line_by_line("7", event_type, data)
