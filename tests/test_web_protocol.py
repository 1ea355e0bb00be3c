"""One web protocol: Flask and Starlette answer the same routes with the same replies.

Each test runs against both adapters on real servers (werkzeug's threaded
server, uvicorn) on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount

import notify_starlette
import notify_starlette.testing
from notify_flask import stream_blueprint
from notify_flask.testing import lines
from notify_flask.testing import serve as serve_flask
from notifycore import BackendUnavailable, Event, Notifications, PushConsumer, hookimpl
from notifycore.plugins import get_plugins
from notifycore.testing import wait_for
from notifycore.web import process_state

WAIT = 30.0
Site = Callable[..., AbstractContextManager[str]]


def make(**config: Any) -> Notifications:
    notifications = Notifications(config={"BACKEND": "memory", **config}, environ={})
    notifications.create_hub("alerts").register_consumer(PushConsumer(), name="push")
    return notifications


@contextmanager
def flask_site(notifications: Notifications, **options: Any) -> Iterator[str]:
    app = Flask("protocol")
    app.register_blueprint(stream_blueprint(notifications, url_prefix="/n", **options))
    with serve_flask(app) as base:
        yield base + "/n"


@contextmanager
def starlette_site(notifications: Notifications, **options: Any) -> Iterator[str]:
    app = Starlette(routes=[Mount("/n", app=notify_starlette.routes(notifications, **options))])
    with notify_starlette.testing.serve(app) as base:
        yield base + "/n"


@pytest.fixture(params=["flask", "starlette"])
def site(request: pytest.FixtureRequest) -> Site:
    return flask_site if request.param == "flask" else starlette_site


@pytest.fixture
def notes() -> Iterator[Notifications]:
    notifications = make()
    yield notifications
    notifications.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=WAIT) as client:
        yield client


def frames(response: httpx.Response, count: int) -> list[dict[str, str]]:
    """``count`` SSE frames (comments included, as ``{"comment": text}``)."""
    found: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in lines(response):
        if line == "":
            if current:
                found.append(current)
                if len(found) == count:
                    return found
            current = {}
            continue
        name, _, value = line.partition(":")
        current[name or "comment"] = value.removeprefix(" ")
    return found


# -- the same replies --------------------------------------------------------------------------


def test_post_events_answers_the_same_keys(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    with site(notes) as base:
        sent = http.post(base + "/events", json={"event_type": "alert", "event_id": "e-1"})
    assert sent.status_code == 202
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "event_id": "e-1",
        "sender": "",
        "hubs": ["alerts"],
        "outcomes": [{"hub": "alerts", "consumer": "push", "status": "ran"}],
    }


def test_history_names_its_stream_and_embeds_the_stored_json_as_is(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    # Spaces no serialiser would write: the reply holds the stored bytes, never parsed again.
    stored = b'{"event_type":  "alert",   "title": "as stored"}'
    notes.backend.publish("event-hub-alerts", stored)
    with site(notes) as base:
        both = [http.get(base + path) for path in ("/alerts/events", "/event-hub-alerts/events")]
    for reply in both:
        assert reply.status_code == 200
        assert reply.content == (
            b'{"stream":"event-hub-alerts","events":[{"id":"1","event":' + stored + b"}],"
            b'"reset":false}'
        )


def test_errors_are_the_same_json(site: Site, notes: Notifications, http: httpx.Client) -> None:
    def token(request: Any) -> str | None:
        return {"Bearer t-ann": "ann"}.get(request.headers.get("authorization", ""))

    with site(notes, authenticate=token) as base:
        answers = {
            "unknown hub": http.get(base + "/nope/stream"),
            "anonymous": http.get(base + "/alerts/events"),
            "anonymous me": http.get(base + "/me/events"),
            "forbidden": http.get(
                base + "/alerts/events", headers={"Authorization": "Bearer t-ann"}
            ),
            "limit": http.get(
                base + "/me/events?limit=0", headers={"Authorization": "Bearer t-ann"}
            ),
            "since": http.get(
                base + "/me/events?since=x", headers={"Authorization": "Bearer t-ann"}
            ),
            "not json": http.post(base + "/events", content=b"{}"),
        }
        mine = http.get(base + "/me/events?limit=5", headers={"Authorization": "Bearer t-ann"})
    got = {what: (r.status_code, r.json()["error"]) for what, r in answers.items()}
    assert got == {
        "unknown hub": (404, "not_found"),
        "anonymous": (401, "unauthorized"),
        "anonymous me": (401, "unauthorized"),
        "forbidden": (403, "forbidden"),
        "limit": (400, "bad_request"),
        "since": (400, "bad_request"),
        "not json": (415, "unsupported_media_type"),
    }
    assert answers["anonymous"].headers["www-authenticate"] == "Bearer"
    assert answers["forbidden"].json()["message"] == "not allowed to read event-hub-alerts"
    assert mine.status_code == 200 and mine.json()["stream"] == "user:ann"


def test_another_method_or_path_is_json_too(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    with site(notes) as base:
        answers = {
            "GET events": http.get(base + "/events"),
            "PUT events": http.put(base + "/events", json={}),
            "POST a stream": http.post(base + "/alerts/stream"),
            "POST me": http.post(base + "/me/stream"),
            "DELETE history": http.delete(base + "/me/events"),
            "DELETE events": http.delete(base + "/events"),
            "TRACE events": http.request("TRACE", base + "/events"),
            "PROPFIND history": http.request("PROPFIND", base + "/alerts/events"),
            "no route": http.get(base + "/a/b/c"),
            "no route either": http.post(base + "/alerts"),
            "OPTIONS no route": http.options(base + "/x/y/z"),
            "PATCH no route": http.patch(base + "/x/y/z"),
            "the prefix": http.get(base + "/"),
        }
        options = {
            "events": http.options(base + "/events"),
            "a stream": http.options(base + "/alerts/stream"),
            "my history": http.options(base + "/me/events"),
        }
    got = {what: (r.status_code, r.json()["error"]) for what, r in answers.items()}
    assert got == {
        "GET events": (405, "method_not_allowed"),
        "PUT events": (405, "method_not_allowed"),
        "POST a stream": (405, "method_not_allowed"),
        "POST me": (405, "method_not_allowed"),
        "DELETE history": (405, "method_not_allowed"),
        "DELETE events": (405, "method_not_allowed"),
        "TRACE events": (405, "method_not_allowed"),
        "PROPFIND history": (405, "method_not_allowed"),
        "no route": (404, "not_found"),
        "no route either": (404, "not_found"),
        "OPTIONS no route": (404, "not_found"),
        "PATCH no route": (404, "not_found"),
        "the prefix": (404, "not_found"),
    }
    assert all(r.headers["content-type"] == "application/json" for r in answers.values())
    assert answers["GET events"].headers["allow"] == "POST, OPTIONS"
    assert answers["POST a stream"].headers["allow"] == "GET, HEAD, OPTIONS"
    # OPTIONS on a route says what it answers (CORS extensions build their preflight on it).
    assert {
        what: (r.status_code, r.headers["allow"], r.content) for what, r in options.items()
    } == {
        "events": (204, "POST, OPTIONS", b""),
        "a stream": (204, "GET, HEAD, OPTIONS", b""),
        "my history": (204, "GET, HEAD, OPTIONS", b""),
    }


def test_recipients_and_tags_that_are_not_lists_of_ids_are_refused(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    odd: dict[str, dict[str, Any]] = {
        "recipients as an object": {"recipients": {"bob": 1}},
        "tags as an object": {"tags": {"a": 1}},
        "an empty recipient": {"recipients": [""]},
        "a blank recipient": {"recipients": ["  "]},
        "a padded recipient": {"recipients": ["bob "]},
    }
    with site(notes) as base:
        answers = {
            what: http.post(base + "/events", json={"event_type": "alert", **fields})
            for what, fields in odd.items()
        }
        history = http.get(base + "/alerts/events").json()["events"]
    got = {
        what: (r.status_code, r.json()["error"], r.json()["field"]) for what, r in answers.items()
    }
    assert got == {what: (422, "invalid_event", next(iter(fields))) for what, fields in odd.items()}
    assert history == [] and "user:" not in notes.fanout.streams


def test_heartbeats_are_the_same_comment(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    with site(notes, heartbeat=0.05) as base, http.stream("GET", base + "/alerts/stream") as r:
        assert frames(r, 2) == [{"retry": "3000"}, {"comment": "heartbeat"}]


# -- an unreachable backend is a 503 everywhere -------------------------------------------------


def test_an_unreachable_backend_is_a_503_on_every_route(
    site: Site, notes: Notifications, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable("the broker is away")

    for name in ("read", "last_id", "publish", "enqueue_many"):
        monkeypatch.setattr(notes.backend, name, down)
    with site(notes) as base:
        answers = {
            "stream": http.get(base + "/alerts/stream"),
            "resumed stream": http.get(base + "/alerts/stream", headers={"Last-Event-ID": "1"}),
            "history": http.get(base + "/alerts/events"),
        }
        monkeypatch.setattr(notes, "send", down)
        answers["send"] = http.post(base + "/events", json={"event_type": "alert"})
    got = {what: (r.status_code, r.json()) for what, r in answers.items()}
    refusal = (503, {"error": "unavailable", "message": "the broker is away"})
    assert got == dict.fromkeys(answers, refusal)
    assert notes.fanout.streams == []


def test_a_consumer_failing_under_the_raise_policy_is_a_json_500_saying_what_happened(
    site: Site, http: httpx.Client
) -> None:
    notifications = make(CONSUMER_ERRORS="raise")

    def broken(event: Event) -> None:
        raise RuntimeError("the app's consumer broke")

    notifications.get_hub("alerts").register_consumer(broken, name="broken")
    try:
        with site(notifications) as base:
            answer = http.post(base + "/events", json={"event_type": "alert", "event_id": "e-9"})
            history = http.get(base + "/alerts/events").json()
    finally:
        notifications.close()
    assert answer.status_code == 500
    body = answer.json()
    # The consumer's own error stays in the server's log.
    assert (
        body["error"] == "consumer_failed"
        and body["message"] == "1 consumer(s) failed: alerts/broken"
    )
    assert body["event_id"] == "e-9"
    assert [(o["consumer"], o["status"]) for o in body["outcomes"]] == [
        ("push", "ran"),
        ("broken", "failed"),
    ]
    assert [item["event"]["event_id"] for item in history["events"]] == ["e-9"], "it went out"


# -- one frame cache per process ---------------------------------------------------------------


def test_one_frame_cache_per_process_across_blueprints(
    notes: Notifications, http: httpx.Client
) -> None:
    app = Flask("two-blueprints")
    app.register_blueprint(stream_blueprint(notes, name="first", url_prefix="/a"))
    app.register_blueprint(stream_blueprint(notes, name="second", url_prefix="/b"))
    with (
        serve_flask(app) as base,
        http.stream("GET", base + "/a/alerts/stream") as first,
        http.stream("GET", base + "/b/alerts/stream") as second,
    ):
        assert frames(first, 1) == frames(second, 1) == [{"retry": "3000"}]
        threading.Timer(0.1, notes.send, ({"event_type": "alert", "title": "once"},)).start()
        assert frames(first, 1) == frames(second, 1)
    assert process_state(notes).frames(notes.fanout.backend).made == 1


# -- unnamed events for EventSource.onmessage ---------------------------------------------------


def test_named_events_false_serves_frames_without_an_event_field(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    with (
        site(notes, named_events=False) as base,
        http.stream("GET", base + "/alerts/stream") as unnamed,
        http.stream("GET", base + "/alerts/stream", headers={"Last-Event-ID": "0"}) as resumed,
    ):
        assert frames(unnamed, 1) == [{"retry": "3000"}]
        notes.send({"event_type": "alert", "title": "for onmessage"})
        (got,) = frames(unnamed, 1)
        assert set(got) == {"id", "data"} and json.loads(got["data"])["title"] == "for onmessage"
        assert frames(resumed, 2)[1] == got


# -- access decisions run off the loop, async ones awaited --------------------------------------


def test_a_slow_sync_authorize_never_blocks_the_other_requests(
    notes: Notifications, http: httpx.Client
) -> None:
    entered, release = threading.Event(), threading.Event()

    def authenticate(request: Any) -> str | None:
        return "ann" if request.headers.get("authorization") == "Bearer t-ann" else None

    def authorize(principal: Any, stream: str) -> bool:
        entered.set()
        release.wait(4 * WAIT)  # a slow database, say: longer than the request below waits
        return True

    ann = {"Authorization": "Bearer t-ann"}
    results: list[int] = []
    with starlette_site(notes, authenticate=authenticate, authorize=authorize) as base:
        waiting = threading.Thread(
            target=lambda: results.append(
                http.get(base + "/alerts/events", headers=ann).status_code
            )
        )
        waiting.start()
        try:
            assert entered.wait(WAIT), "authorize was asked"
            # Served while authorize still holds the first request: the loop is free.
            assert http.get(base + "/me/events", headers=ann).status_code == 200
        finally:
            release.set()
            waiting.join(WAIT)
    assert results == [200]


def test_async_access_rules_are_awaited_on_both_adapters(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    async def authenticate(request: Any) -> str | None:
        user: str | None = request.headers.get("x-user")
        return user

    async def authorize(principal: Any, stream: str) -> bool:
        return bool(principal == "ann")

    async def authorize_send(principal: Any, event: Event) -> bool:
        return bool(principal == "ann")

    rules = {"authenticate": authenticate, "authorize": authorize, "authorize_send": authorize_send}
    with site(notes, **rules) as base:
        for who, status in (("ann", 200), ("bob", 403)):
            assert http.get(base + "/alerts/events", headers={"x-user": who}).status_code == status
            sent = http.post(base + "/events", json={"event_type": "a"}, headers={"x-user": who})
            assert sent.status_code == {200: 202, 403: 403}[status]


class AsyncRules:
    """Access hooks written ``async def``: a coroutine must never pass for a yes."""

    @hookimpl
    async def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
        return bool(principal == "ann")

    @hookimpl
    async def notifycore_authorize_send(self, principal: Any, event: Event) -> bool | None:
        return bool(principal == "ann")


def test_async_access_hooks_are_awaited_on_both_adapters(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    def authenticate(request: Any) -> str | None:
        user: str | None = request.headers.get("x-user")
        return user

    get_plugins().register(AsyncRules(), name="async-rules")
    try:
        with site(notes, authenticate=authenticate) as base:
            for who, read, send in (("ann", 200, 202), ("bob", 403, 403)):
                headers = {"x-user": who}
                assert http.get(base + "/alerts/events", headers=headers).status_code == read
                posted = http.post(base + "/events", json={"event_type": "a"}, headers=headers)
                assert posted.status_code == send
    finally:
        get_plugins().unregister(name="async-rules")


def test_a_query_token_is_hidden_from_authenticate_but_the_rest_of_the_request_is_not(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    seen: list[tuple[str | None, str | None]] = []

    def authenticate(request: Any) -> str | None:
        query = getattr(request, "args", None) or request.query_params
        seen.append((query.get("token"), query.get("other")))
        user: str | None = request.headers.get("x-user")
        return user

    with site(notes, authenticate=authenticate) as base:
        mine = http.get(base + "/me/events?token=t&other=kept", headers={"x-user": "ann"})
    assert mine.status_code == 200, "a token in the URL is ignored, not a refusal"
    assert seen == [(None, "kept")]


def test_a_stream_the_server_ends_is_reported_on_both_adapters(
    site: Site, notes: Notifications, http: httpx.Client
) -> None:
    reported: list[dict[str, str]] = []

    class Metrics:
        @hookimpl
        def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
            if name == "streams.disconnected":
                reported.append(tags)

    get_plugins().register(Metrics(), name="metrics")
    try:
        with site(notes) as base, http.stream("GET", base + "/alerts/stream") as response:
            assert frames(response, 1) == [{"retry": "3000"}]
            notes.fanout.close()  # what a shutdown does
            assert frames(response, 1) == [], "the stream ended"
            wait_for(lambda: bool(reported), WAIT, "the disconnection to be reported")
    finally:
        get_plugins().unregister(name="metrics")
    assert reported == [{"reason": "shutdown", "transport": "sse"}]
