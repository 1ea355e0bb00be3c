"""WS /ws: subscribe, unsubscribe, refusals, events, resets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette_helpers import WAIT, Serve, Served, event, make_notifications, token_auth
from websockets.sync.client import ClientConnection, connect

from notifycore import Notifications


@contextmanager
def ws_client(served: Served, token: str | None = None) -> Iterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with connect(served.ws, additional_headers=headers, open_timeout=WAIT) as ws:
        yield ws


def ask(ws: ClientConnection, **message: Any) -> dict[str, Any]:
    ws.send(json.dumps(message))
    return receive(ws)


def receive(ws: ClientConnection) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(ws.recv(timeout=WAIT))
    return answer


def test_subscribe_receive_unsubscribe(serve: Serve, notes: Notifications) -> None:
    served = serve(notes)
    with ws_client(served) as ws:
        assert ask(ws, action="subscribe", stream="alerts") == {
            "type": "subscribed",
            "stream": "event-hub-alerts",
        }
        sent = notes.send(event("one")).event
        assert receive(ws) == {
            "type": "event",
            "stream": "event-hub-alerts",
            "id": "1",
            "event": sent.to_dict(),
        }
        assert ask(ws, action="subscribe", stream="event-hub-alerts")["type"] == "subscribed"
        assert ask(ws, action="unsubscribe", stream="alerts") == {
            "type": "unsubscribed",
            "stream": "event-hub-alerts",
        }
        notes.send(event("not for us"))
        # The next message is the answer to this request: nothing was pushed in between.
        refused = ask(ws, action="subscribe", stream="nope")
        assert refused["type"] == "error"
        assert refused["error"] == "not_found"
        assert refused["stream"] == "nope"
        # Resubscribing from an id replays what was missed.
        assert ask(ws, action="subscribe", stream="alerts", after="1")["type"] == "subscribed"
        missed = receive(ws)
        assert (missed["id"], missed["event"]["title"]) == ("2", "not for us")


def test_two_streams_on_one_connection(serve: Serve, notes: Notifications) -> None:
    served = serve(notes)
    with ws_client(served) as ws:
        ask(ws, action="subscribe", stream="alerts")
        ask(ws, action="subscribe", stream="user:alice")
        notes.send(event("everyone"))
        notes.send(event("alice's", "alice"))  # private: her stream only, never the hub's
        got = {(m["stream"], m["event"]["title"]) for m in (receive(ws), receive(ws))}
    assert got == {("event-hub-alerts", "everyone"), ("user:alice", "alice's")}


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("not json", "bad_request"),
        (json.dumps(["subscribe"]), "bad_request"),
        (json.dumps({"action": "dance", "stream": "alerts"}), "bad_request"),
        (json.dumps({"action": "subscribe"}), "bad_request"),
        (json.dumps({"action": "subscribe", "stream": "alerts", "after": 3}), "bad_request"),
        (json.dumps({"action": "subscribe", "stream": "alerts", "after": "x"}), "bad_request"),
        (json.dumps({"action": "subscribe", "stream": "me"}), "unauthorized"),
    ],
)
def test_bad_requests(serve: Serve, notes: Notifications, message: str, error: str) -> None:
    served = serve(notes)
    with ws_client(served) as ws:
        ws.send(message)
        answer = receive(ws)
    assert answer["type"] == "error"
    assert answer["error"] == error


def test_refusals_with_auth(serve: Serve, notes: Notifications) -> None:
    served = serve(notes, authenticate=token_auth)
    with ws_client(served, "t-bob") as bob:
        for stream in ("alerts", "user:alice"):
            answer = ask(bob, action="subscribe", stream=stream)
            assert (answer["type"], answer["error"]) == ("error", "forbidden")
        assert ask(bob, action="subscribe", stream="me") == {
            "type": "subscribed",
            "stream": "user:bob",
        }
        notes.send(event("for alice", "alice"))
        notes.send(event("for bob", "bob"))
        assert receive(bob)["event"]["title"] == "for bob"
    with ws_client(served) as anonymous:
        answer = ask(anonymous, action="subscribe", stream="alerts")
        assert (answer["type"], answer["error"]) == ("error", "unauthorized")


def test_reset_over_websocket(serve: Serve) -> None:
    notifications = make_notifications(STREAM_MAXLEN=2)
    try:
        served = serve(notifications)
        for t in ("a", "b", "c", "d"):
            notifications.send(event(t))
        with ws_client(served) as ws:
            ask(ws, action="subscribe", stream="alerts", after="1")
            assert receive(ws) == {"type": "reset", "stream": "event-hub-alerts"}
            assert [receive(ws)["id"] for _ in range(2)] == ["3", "4"]
    finally:
        notifications.close()


def test_disconnect_closes_subscriptions(serve: Serve, notes: Notifications) -> None:
    import time

    served = serve(notes)
    with ws_client(served) as ws:
        ask(ws, action="subscribe", stream="alerts")
        assert notes.fanout.streams == ["event-hub-alerts"]
    deadline = time.monotonic() + WAIT
    while notes.fanout.streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert notes.fanout.streams == []


def test_an_unreachable_backend_is_an_error_message_and_the_session_goes_on(
    serve: Serve, notes: Notifications, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifycore import BackendUnavailable
    from notifycore.testing import wait_for

    served = serve(notes)
    real_last_id = notes.backend.last_id

    def down(*args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable("the broker is away")

    with ws_client(served) as ws:
        monkeypatch.setattr(notes.backend, "last_id", down)
        assert ask(ws, action="subscribe", stream="alerts") == {
            "type": "error",
            "stream": "event-hub-alerts",
            "error": "unavailable",
            "message": "the broker is away",
        }
        monkeypatch.setattr(notes.backend, "last_id", real_last_id)
        assert ask(ws, action="subscribe", stream="alerts")["type"] == "subscribed"
    wait_for(lambda: notes.fanout.streams == [], WAIT, "the closed session to let go")
