"""GET /{hub_id}/stream and /me/stream: frames, headers, heartbeats, resume and reset."""

from __future__ import annotations

import time

import httpx
import pytest
from starlette_helpers import SSE, WAIT, Serve, data_of, event, make_notifications

from notifycore import Notifications


def test_frames_and_headers(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    served = serve(notes)
    with client.stream("GET", served.base + "/alerts/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        sse = SSE(response)
        assert sse.next() == {"retry": "3000"}  # subscribed: what is sent now is ours
        first = notes.send(event("one")).event
        notes.send(event("two\nlines", kind="x"))
        frames = sse.events(2)
    assert [f["id"] for f in frames] == ["1", "2"]
    assert [f["event"] for f in frames] == ["alert", "alert"]
    assert data_of(frames[0]) == first.to_dict()
    assert data_of(frames[1])["title"] == "two\nlines"  # escaped in JSON: still one data line
    assert data_of(frames[1])["kind"] == "x"


def test_hub_id_and_label_name_the_same_stream(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes, retry_ms=1234)
    with client.stream("GET", served.base + "/event-hub-alerts/stream") as response:
        sse = SSE(response)
        assert sse.next() == {"retry": "1234"}
        notes.send(event("by id"))
        assert data_of(sse.next())["title"] == "by id"


def test_heartbeat_comments(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    served = serve(notes, heartbeat=0.05)
    with client.stream("GET", served.base + "/alerts/stream") as response:
        sse = SSE(response)
        sse.next()
        assert sse.next(comments=True) == {"comment": "heartbeat"}


def test_resume_with_last_event_id_header(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes)
    for title in ("a", "b", "c"):
        notes.send(event(title))
    headers = {"Last-Event-ID": "1"}
    with client.stream("GET", served.base + "/alerts/stream", headers=headers) as response:
        sse = SSE(response)
        sse.next()
        replayed = sse.events(2)
        notes.send(event("d"))
        live = sse.next()
    assert [(f["id"], data_of(f)["title"]) for f in [*replayed, live]] == [
        ("2", "b"),
        ("3", "c"),
        ("4", "d"),
    ]


def test_resume_with_query_parameter(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes)
    for title in ("a", "b", "c"):
        notes.send(event(title))
    url = served.base + "/alerts/stream?lastEventId=2"
    with client.stream("GET", url) as response:
        sse = SSE(response)
        sse.next()
        frame = sse.next()
    assert (frame["id"], data_of(frame)["title"]) == ("3", "c")


def test_header_wins_over_query_parameter(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes)
    for title in ("a", "b", "c"):
        notes.send(event(title))
    url = served.base + "/alerts/stream?lastEventId=1"
    with client.stream("GET", url, headers={"Last-Event-ID": "2"}) as response:
        sse = SSE(response)
        sse.next()
        assert sse.next()["id"] == "3"


def test_reset_when_resume_id_is_older_than_retention(serve: Serve, client: httpx.Client) -> None:
    notifications = make_notifications(STREAM_MAXLEN=3)
    try:
        served = serve(notifications)
        for i in range(6):
            notifications.send(event(f"e{i + 1}"))
        with client.stream(
            "GET", served.base + "/alerts/stream", headers={"Last-Event-ID": "1"}
        ) as response:
            sse = SSE(response)
            sse.next()
            reset = sse.next()
            kept = sse.events(3)
        assert reset["event"] == "reset"
        assert reset["id"] == "1"  # reconnecting from here is told again, never silently
        assert data_of(reset)["stream"] == "event-hub-alerts"
        assert [f["id"] for f in kept] == ["4", "5", "6"]
        # An id still inside the retention resumes without a reset.
        with client.stream(
            "GET", served.base + "/alerts/stream", headers={"Last-Event-ID": "3"}
        ) as response:
            sse = SSE(response)
            sse.next()
            assert sse.next()["id"] == "4"
    finally:
        notifications.close()


@pytest.mark.parametrize(
    ("headers", "query"),
    [({"Last-Event-ID": "not-an-id"}, ""), ({}, "?lastEventId=12x")],
)
def test_malformed_resume_id_is_400(
    serve: Serve,
    notes: Notifications,
    client: httpx.Client,
    headers: dict[str, str],
    query: str,
) -> None:
    served = serve(notes)
    response = client.get(served.base + "/alerts/stream" + query, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert notes.fanout.streams == []  # nothing left subscribed


def test_unknown_hub_is_404(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    served = serve(notes)
    response = client.get(served.base + "/nope/stream")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "no hub named 'nope'"}


def test_me_stream_without_principal_is_401(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes)
    response = client.get(served.base + "/me/stream")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_closing_the_client_ends_the_subscription(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes)
    with client.stream("GET", served.base + "/alerts/stream") as response:
        sse = SSE(response)  # kept: dropping the parser closes the response
        sse.next()
        assert notes.fanout.streams == ["event-hub-alerts"]
    # The server notices the disconnect on its own schedule: wait for it, bounded.
    deadline = time.monotonic() + WAIT
    while notes.fanout.streams and time.monotonic() < deadline:
        time.sleep(0.01)
    assert notes.fanout.streams == []


def test_one_frame_cache_per_process(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    from notifycore.web import process_state

    served = serve(notes)
    with (
        client.stream("GET", served.base + "/alerts/stream") as first,
        client.stream("GET", served.base + "/alerts/stream") as second,
    ):
        a, b = SSE(first), SSE(second)
        a.next()
        b.next()
        notes.send(event("shared"))
        assert a.next() == b.next()
    assert process_state(notes).frames(notes.fanout.backend).made == 1
