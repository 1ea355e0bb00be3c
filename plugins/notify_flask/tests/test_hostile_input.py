"""POST /events on a real threaded Flask server: hostile bodies get 422 JSON, never a 500."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from hypothesis import given

from notify_flask import stream_blueprint
from notify_flask.testing import serve
from notifycore import Notifications, PushConsumer
from tests.hostile import FAST, json_bodies

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[httpx.Client, Notifications]]:
    app = Flask("hostile")
    app.config.update(BACKEND="memory", SECRET_KEY="test")
    notifications = Notifications(app, environ={})
    hub = notifications.create_hub("Chat")
    hub.register_consumer(PushConsumer(per_recipient=True))
    hub.register_consumer(lambda e: e.to_json_bytes(), name="app")
    app.register_blueprint(stream_blueprint())
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        yield http, notifications
    notifications.close()


def post(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post("/notifications/events", content=body, headers=JSON)


def assert_answered(response: httpx.Response) -> dict[str, Any]:
    """Accepted with every consumer run, or refused with a JSON 4xx: never a 500."""
    assert response.status_code in (202, 422), response.text[:300]
    body: dict[str, Any] = response.json()
    if response.status_code == 202:
        assert all(o["status"] != "failed" for o in body["outcomes"]), body
    else:
        assert body["error"] == "invalid_event" and isinstance(body["field"], str), body
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"event_type": "chat", "title": "\\ud800"}', "title"),
        (b'{"event_type": "chat", "\\udfff": 1}', "\\udfff"),
        (b'{"event_type": "chat", "x": {"\\ud800": 1}}', "x"),
        (b'{"event_type": "chat", "x": ' + b"[" * 300 + b"]" * 300 + b"}", "x"),
        (b'{"event_type": "chat", "x": ' + b"[" * 950 + b"]" * 950 + b"}", "x"),
        (b'{"event_type": "chat", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "event"),
        (b"[" * 5000 + b"]" * 5000, "event"),
        (b'{"event_type": "chat", "x": ' + b"[" * 33 + b"]" * 33 + b"}", "x"),
        (b'{"event_type": "chat", "n": ' + b"9" * 5000 + b"}", "event"),
        (b'{"event_type": "chat", "n": NaN}', "n"),
        (b'{"event_type": "chat\xff"}', "event"),
        (b'["event_type"]', "event"),
        (b"", "event"),
    ],
)
def test_hostile_bodies_are_422_naming_the_field(
    site: tuple[httpx.Client, Notifications], body: bytes, field: str
) -> None:
    http, _ = site
    response = post(http, body)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["field"] == field


def test_a_body_over_the_size_limit_is_422_unread(site: tuple[httpx.Client, Notifications]) -> None:
    http, notifications = site
    limit = notifications.settings["MAX_EVENT_SIZE"]
    response = post(http, b'{"event_type": "chat", "body": "' + b"x" * limit + b'"}')
    assert response.status_code == 422
    assert response.json() == {
        "error": "invalid_event",
        "field": "event",
        "message": f"is over the limit of {limit} bytes",
    }


@FAST
@given(body=json_bodies)
def test_any_body_gets_an_answer(site: tuple[httpx.Client, Notifications], body: bytes) -> None:
    http, _ = site
    assert_answered(post(http, body))


def test_a_body_whose_chunks_break_off_is_400_json_and_sends_nothing(
    site: tuple[httpx.Client, Notifications],
) -> None:
    """A chunked body with a whole event in its first chunk, then a chunk header that is no
    number: refused as cut short, the event in it never sent (werkzeug raised an OSError)."""
    http, notifications = site
    event = json.dumps({"event_type": "chat", "title": "broken-off"}).encode()
    with socket.create_connection((http.base_url.host, http.base_url.port), timeout=30) as client:
        client.sendall(
            b"POST /notifications/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(event)
            + event
            + b"\r\nzz\r\n"
        )
        answer = b""
        while chunk := client.recv(65536):  # until the server closes (each recv bounded)
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:300]
    assert json.loads(body)["error"] == "bad_request", body
    sent = notifications.backend.read("event-hub-Chat").messages
    assert all(json.loads(m.data)["title"] != "broken-off" for m in sent)
