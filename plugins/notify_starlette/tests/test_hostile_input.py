"""Hostile input on a real uvicorn server: POST /events answers 422 JSON, never a 500 or a
202 with a failed push, and a WebSocket message gets an error while the session goes on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette_helpers import WAIT, Serve, Served, make_notifications
from websockets.sync.client import ClientConnection, connect

from tests.hostile import FAST, json_bodies, json_texts, texts, to_json, values

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    notifications = make_notifications()
    notifications.get_hub("alerts").register_consumer(lambda e: e.to_json_bytes(), name="app")
    serving = Serve()
    try:
        yield serving(notifications)
    finally:
        for server in serving.servers:
            server.stop()
        notifications.close()


@pytest.fixture(scope="module")
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base, timeout=WAIT) as client:
        yield client


@pytest.fixture(scope="module")
def ws() -> Iterator[ClientConnection]:
    """One WebSocket session for every hostile message of the module: it must survive them all.

    Its own server, where nothing is sent: every message gets exactly one reply.
    """
    notifications = make_notifications()
    serving = Serve()
    try:
        with connect(serving(notifications).ws, open_timeout=WAIT) as connection:
            yield connection
    finally:
        for server in serving.servers:
            server.stop()
        notifications.close()


def post(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post("/events", content=body, headers=JSON)


def assert_answered(response: httpx.Response) -> None:
    """Accepted with every consumer run, or refused with a JSON 4xx: never a 500."""
    assert response.status_code in (202, 422), response.text[:300]
    body: dict[str, Any] = response.json()
    if response.status_code == 202:
        assert all(c["status"] != "failed" for c in body["outcomes"]), body
    else:
        assert body["error"] == "invalid_event" and isinstance(body["field"], str), body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"event_type": "alert", "title": "\\ud800"}', "title"),
        (b'{"event_type": "alert", "recipients": ["bob", "\\udc80"]}', "recipients"),
        (b'{"event_type": "alert", "\\udfff": 1}', "\\udfff"),
        (b'{"event_type": "alert", "x": ' + b"[" * 300 + b"]" * 300 + b"}", "x"),
        (b'{"event_type": "alert", "x": ' + b"[" * 950 + b"]" * 950 + b"}", "x"),
        (b'{"event_type": "alert", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "event"),
        (b'{"event_type": "alert", "x": ' + b"[" * 33 + b"]" * 33 + b"}", "x"),
        (b'{"event_type": "alert", "n": ' + b"9" * 1300 + b"}", "n"),
        (b'{"event_type": "alert", "n": Infinity}', "n"),
        (b'{"event_type": "alert\xed\xa0\x80"}', "event"),
        (b"null", "event"),
    ],
)
def test_hostile_bodies_are_422_naming_the_field(
    http: httpx.Client, body: bytes, field: str
) -> None:
    response = post(http, body)
    assert response.status_code == 422, response.text[:300]
    assert response.json() == {
        "error": "invalid_event",
        "message": response.json()["message"],
        "field": field,
    }


@FAST
@given(body=json_bodies)
def test_any_body_gets_an_answer(http: httpx.Client, body: bytes) -> None:
    assert_answered(post(http, body))


# -- WebSocket ---------------------------------------------------------------------------------


def answer(ws: ClientConnection, message: str | bytes) -> dict[str, Any]:
    ws.send(message)
    reply: dict[str, Any] = json.loads(ws.recv(timeout=WAIT))
    return reply


def assert_session_goes_on(ws: ClientConnection) -> None:
    assert answer(ws, json.dumps({"action": "unsubscribe", "stream": "alerts"})) == {
        "type": "unsubscribed",
        "stream": "event-hub-alerts",
    }


@pytest.mark.parametrize(
    "message",
    [
        "[" * 5000 + "]" * 5000,
        '{"action": "subscribe", "stream": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"action": "subscribe", "stream": "\\ud800"}',
        '{"action": "subscribe", "stream": "user:\\udfff"}',
        '{"action": "subscribe", "stream": "alerts", "after": "\\ud800"}',
        '{"action": "subscribe", "stream": "' + "x" * 5000 + '"}',
        b"\xff\xfe\xed\xa0\x80",
        "x" * 100_000,
    ],
)
def test_a_hostile_message_is_a_bad_request_and_the_session_goes_on(
    ws: ClientConnection, message: str | bytes
) -> None:
    reply = answer(ws, message)
    assert reply["type"] == "error" and reply["error"] == "bad_request", reply
    assert_session_goes_on(ws)


streams = st.sampled_from(["alerts", "me", "event-hub-alerts", "user:bob", "nope"]) | texts
actions = st.sampled_from(["subscribe", "unsubscribe", "publish"]) | texts
requests = st.fixed_dictionaries(
    {"action": actions | values, "stream": streams | values},
    optional={"after": st.sampled_from(["0", "1", "-1", "²", "1-²"]) | texts | values},
)
frames = requests.map(to_json) | json_texts() | st.binary(max_size=40)


@FAST
@given(message=frames)
def test_any_message_gets_one_reply_and_the_session_goes_on(
    ws: ClientConnection, message: str | bytes
) -> None:
    reply = answer(ws, message)
    assert reply["type"] in ("subscribed", "unsubscribed", "error"), reply
    if reply["type"] == "error":
        assert isinstance(reply["error"], str) and isinstance(reply["message"], str)
    assert_session_goes_on(ws)
