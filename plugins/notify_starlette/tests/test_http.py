"""History, POST /events, authentication and authorisation, per-user streams."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from starlette_helpers import SSE, TOKENS, Serve, data_of, event, make_notifications, token_auth

from notifycore import Notifications, hookimpl

ALICE = {"Authorization": "Bearer t-alice"}
BOB = {"Authorization": "Bearer t-bob"}


# -- history -----------------------------------------------------------------------------------


def test_history(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    served = serve(notes)
    sent = [notes.send(event(t)).event for t in ("a", "b", "c")]
    everything = client.get(served.base + "/alerts/events")
    assert everything.status_code == 200
    assert everything.headers["content-type"] == "application/json"
    assert everything.json() == {
        "stream": "event-hub-alerts",
        "events": [{"id": str(i + 1), "event": e.to_dict()} for i, e in enumerate(sent)],
        "reset": False,
    }
    since = client.get(served.base + "/alerts/events", params={"since": "1"}).json()
    assert [item["id"] for item in since["events"]] == ["2", "3"]
    limited = client.get(served.base + "/alerts/events", params={"since": "0", "limit": "1"})
    assert [item["event"]["title"] for item in limited.json()["events"]] == ["a"]
    assert client.get(served.base + "/alerts/events", params={"since": "3"}).json() == {
        "stream": "event-hub-alerts",
        "events": [],
        "reset": False,
    }


def test_history_reset_past_retention(serve: Serve, client: httpx.Client) -> None:
    notifications = make_notifications(STREAM_MAXLEN=2)
    try:
        served = serve(notifications)
        for t in ("a", "b", "c", "d"):
            notifications.send(event(t))
        answer = client.get(served.base + "/alerts/events", params={"since": "1"}).json()
        assert answer["reset"] is True
        assert [item["id"] for item in answer["events"]] == ["3", "4"]
    finally:
        notifications.close()


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"since": "x1"}, 400),
        ({"limit": "0"}, 400),
        ({"limit": "1001"}, 400),
        ({"limit": "a"}, 400),
    ],
)
def test_history_bad_parameters(
    serve: Serve, notes: Notifications, client: httpx.Client, params: dict[str, str], status: int
) -> None:
    served = serve(notes)
    response = client.get(served.base + "/alerts/events", params=params)
    assert response.status_code == status
    assert response.json()["error"] == "bad_request"


def test_history_unknown_hub(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    served = serve(notes)
    response = client.get(served.base + "/nope/events")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# -- POST /events ------------------------------------------------------------------------------


def test_post_event_sends_it(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    served = serve(notes)
    response = client.post(served.base + "/events", json=event("posted", event_id="e-1"))
    assert response.status_code == 202
    body = response.json()
    assert body["event_id"] == "e-1"
    assert body["hubs"] == ["alerts"]
    assert [c["status"] for c in body["outcomes"]] == ["ran"]
    history = client.get(served.base + "/alerts/events").json()["events"]
    assert [item["event"]["event_id"] for item in history] == ["e-1"]


def test_post_awaits_the_send_on_the_loop_only_when_nothing_it_runs_blocks(
    serve: Serve, notes: Notifications, client: httpx.Client, no_sync_hooks: bool
) -> None:
    served = serve(notes)
    loop_thread = served.server.thread.ident
    ran: list[int | None] = []

    async def where(e: Any) -> None:
        ran.append(threading.get_ident())

    notes.get_hub("alerts").register_consumer(where, name="where")

    def post() -> int | None:
        response = client.post(served.base + "/events", json=event("posted"))
        assert response.status_code == 202, response.text
        return ran[-1]

    class SyncAfterSend:
        @hookimpl
        def notifycore_after_send(self, notifications: Any, event: Any, result: Any) -> None:
            pass

    assert post() == loop_thread, "async consumers only: awaited on the server's loop"
    hook = SyncAfterSend()
    notes.plugins.register(hook)
    try:
        assert post() != loop_thread, "a sync hook: the send runs in a worker thread"
    finally:
        notes.plugins.unregister(hook)
    assert post() == loop_thread
    notes.create_hub("log").register_consumer(lambda e: None, name="sync")
    assert post() != loop_thread, "a sync consumer: the whole send runs in a worker thread"


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"title": "no type"}', "event_type"),
        (b"not json", "event"),
        (b"[1, 2]", "event"),
        (b'{"event_type": "a", "recipients": "alice"}', "recipients"),
        (b'{"event_type": "a", "timestamp": "yesterday"}', "timestamp"),
        (b"", "event"),
    ],
)
def test_post_event_validation(
    serve: Serve, notes: Notifications, client: httpx.Client, content: bytes, field: str
) -> None:
    served = serve(notes)
    response = client.post(
        served.base + "/events", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_event"
    assert body["field"] == field
    assert client.get(served.base + "/alerts/events").json()["events"] == []


def test_post_event_too_large(serve: Serve, client: httpx.Client) -> None:
    notifications = make_notifications(MAX_EVENT_SIZE=1000)
    try:
        served = serve(notifications)
        response = client.post(served.base + "/events", json=event("x" * 2000))
        assert response.status_code == 422
        assert response.json()["field"] == "event"
    finally:
        notifications.close()


# -- authentication and authorisation -----------------------------------------------------------


def test_with_auth_nothing_is_readable_by_default(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes, authenticate=token_auth)
    for path in ("/alerts/stream", "/alerts/events"):
        anonymous = client.get(served.base + path)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"] == "unauthorized"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        known = client.get(served.base + path, headers=ALICE)
        assert known.status_code == 403
        assert known.json() == {
            "error": "forbidden",
            "message": "not allowed to read event-hub-alerts",
        }
    # Sending is a permission too: refused unless authorize grants "send".
    assert client.post(served.base + "/events", json=event("x")).status_code == 401
    assert client.post(served.base + "/events", json=event("x"), headers=ALICE).status_code == 403
    assert notes.fanout.streams == []


def test_authorize_decides(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    asked: list[tuple[Any, str]] = []

    def authorize(principal: Any, stream: str) -> bool:
        asked.append((principal, stream))
        return principal is not None and principal["id"] == "alice"

    served = serve(notes, authenticate=token_auth, authorize=authorize)
    assert client.get(served.base + "/alerts/events", headers=ALICE).status_code == 200
    assert client.get(served.base + "/alerts/events", headers=BOB).status_code == 403
    assert client.post(served.base + "/events", json=event("x"), headers=ALICE).status_code == 202
    assert client.post(served.base + "/events", json=event("x"), headers=BOB).status_code == 403
    assert ({"id": "alice"}, "event-hub-alerts") in asked
    assert ({"id": "alice"}, "send") in asked
    with client.stream("GET", served.base + "/alerts/stream", headers=ALICE) as response:
        assert response.status_code == 200


def test_async_authenticate(serve: Serve, notes: Notifications, client: httpx.Client) -> None:
    async def authenticate(request: Any) -> Any:
        return token_auth(request)

    served = serve(notes, authenticate=authenticate)
    assert client.get(served.base + "/me/events", headers=ALICE).status_code == 200
    assert client.get(served.base + "/me/events").status_code == 401


def test_query_token_only_when_allowed(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    refused = serve(notes, authenticate=token_auth)
    # token_auth would read ?token= itself: the adapter hides it unless allowed.
    response = client.get(refused.base + "/me/events", params={"token": "t-alice"})
    assert response.status_code == 401
    allowed = serve(notes, authenticate=token_auth, allow_query_token=True)
    response = client.get(allowed.base + "/me/events", params={"token": "t-alice"})
    assert response.status_code == 200
    with client.stream("GET", allowed.base + "/me/stream", params={"token": "t-bob"}) as streaming:
        assert streaming.status_code == 200


def test_token_is_on_request_state(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    seen: list[Any] = []

    def authenticate(request: Any) -> Any:
        seen.append(request.state.token)
        return None

    served = serve(notes, authenticate=authenticate, allow_query_token=True)
    client.get(served.base + "/me/events", headers=BOB)
    client.get(served.base + "/me/events", params={"token": "q"})
    client.get(served.base + "/me/events", headers={"Authorization": "Basic eDp5"})
    assert seen == ["t-bob", "q", None]


def test_one_users_events_never_reach_another(
    serve: Serve, notes: Notifications, client: httpx.Client
) -> None:
    served = serve(notes, authenticate=token_auth)
    with (
        client.stream("GET", served.base + "/me/stream", headers=ALICE) as alice_response,
        client.stream("GET", served.base + "/me/stream", headers=BOB) as bob_response,
    ):
        alice, bob = SSE(alice_response), SSE(bob_response)
        alice.next()
        bob.next()
        notes.send(event("for alice", "alice"))
        notes.send(event("for bob", "bob"))
        notes.send(event("for both", "alice", "bob"))
        alice_titles = [data_of(f)["title"] for f in alice.events(2)]
        bob_titles = [data_of(f)["title"] for f in bob.events(2)]
    assert alice_titles == ["for alice", "for both"]
    assert bob_titles == ["for bob", "for both"]
    bob_history = client.get(served.base + "/me/events", headers=BOB).json()["events"]
    assert [item["event"]["title"] for item in bob_history] == ["for bob", "for both"]
    assert set(TOKENS) == {"t-alice", "t-bob"}
