"""SSE framing and the access rules the web adapters share."""

from __future__ import annotations

from typing import Any

import pytest

from notifycore import Event, Notifications, UnknownHub, hookimpl
from notifycore.backends.base import StreamMessage
from notifycore.plugins import get_plugins
from notifycore.sse import FrameCache, comment, event_type_of, frame, reset_frame, retry_frame
from notifycore.web import Access, principal_id, resume_id, stream_for_hub


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


def test_principals_and_resume_ids() -> None:
    class User:
        id = 42

    assert principal_id("alice") == "alice"
    assert principal_id({"id": 7}) == "7"
    assert principal_id(User()) == "42"
    assert principal_id(None) is None
    assert resume_id("12", "9") == "12"
    assert resume_id(None, "9") == "9"
    assert resume_id(" ", None) is None


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
    assert custom.allows("admin", "user:bob") and not custom.allows("bob", "user:bob")

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
