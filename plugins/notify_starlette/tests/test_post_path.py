"""POST /events' own path: an ASGI app writing the protocol's replies, the headers it reads."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette_helpers import PREFIX, ServerThread, event

import notify_starlette
from notify_starlette._shared import _Headers, incoming, response, send_reply
from notifycore import Notifications
from notifycore.web import Reply
from notifycore.web.protocol import error_reply, other_method


async def _messages(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(send)
    return sent


@pytest.mark.parametrize(
    "reply",
    [
        Reply.json(202, {"event_id": "e1", "hubs": ["alerts"]}),
        error_reply(401, "unauthorized", "authentication required"),
        other_method("OPTIONS", "POST"),  # 204: no content-length
        other_method("DELETE", "POST"),  # 405 with Allow
        Reply(304, b"", {"Content-Type": "application/json"}),
        Reply(200, b"{}", {"Content-Type": "application/json", "Content-Length": "2"}),
    ],
)
def test_send_reply_writes_what_a_starlette_response_writes(reply: Reply) -> None:
    scope = {"type": "http", "method": "POST", "headers": []}

    async def by_response(send: Any) -> None:
        await response(reply)(scope, _never, send)

    async def by_send_reply(send: Any) -> None:
        await send_reply(reply, send)

    assert asyncio.run(_messages(by_send_reply)) == asyncio.run(_messages(by_response))


async def _never() -> Any:
    raise AssertionError("nothing is received")


def test_the_protocol_reads_each_header_as_starlettes_headers_get_does() -> None:
    raw = [
        (b"host", b"example.test"),
        (b"origin", b"https://first.test"),
        (b"origin", b"https://second.test"),  # a repeated header: the first one counts
        (b"cookie", b"a=1"),
        (b"x-latin", "caf\u00e9".encode("latin-1")),
    ]
    ours, theirs = _Headers(raw), Headers(raw=raw)
    for name in (
        "Host",
        "ORIGIN",
        "origin",
        "Cookie",
        "x-latin",
        "Authorization",
        "Sec-Fetch-Site",
    ):
        assert ours.get(name) == theirs.get(name), name
        assert (name in ours) == (name in theirs), name


def test_a_request_without_a_query_string_has_no_query_and_one_with_it_has_its_own() -> None:
    def request(query: bytes) -> Request:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [],
            "query_string": query,
        }
        return Request(scope)

    bare = incoming(request(b""), allow_query_token=True)
    assert bare.query.get("token") is None and "token" not in bare.query
    given = incoming(request(b"token=t-1&x=2"), allow_query_token=True)
    assert given.query.get("token") == "t-1" and "x" in given.query
    assert given.native.state.token == "t-1"
    hidden = incoming(request(b"token=t-1"), allow_query_token=False)
    assert "token" in hidden.query and hidden.native.state.token is None


def _failing_authenticate_server(notes: Notifications) -> ServerThread:
    """A served app whose ``authenticate`` raises ``LookupError``, which the app's handler
    answers with a 418; the routes are mounted with :class:`_Tagged` on the Mount."""

    def authenticate(request: Any) -> Any:
        raise LookupError("the session store is down")

    async def handler(request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse({"handled": str(exc)}, status_code=418)

    def factory(thread: ServerThread) -> Starlette:
        notifications = notify_starlette.routes(notes, authenticate=authenticate)
        mount = Mount(PREFIX, app=notifications, middleware=[Middleware(_Tagged)])
        return Starlette(routes=[mount], exception_handlers={LookupError: handler})

    return ServerThread(factory).start()


HANDLED = {"handled": "the session store is down"}


def test_an_exception_from_post_events_reaches_the_apps_exception_handlers(
    notes: Notifications,
) -> None:
    # POST /events is an ASGI app of its own, not a Starlette endpoint: the app's handlers
    # still answer what its authenticate raises, as they do on every other route. Middleware
    # on the Mount (CORS, say) sees the handlers' answers, as on a Starlette endpoint: they
    # answer at the route, not above the Mount.
    server = _failing_authenticate_server(notes)
    try:
        with httpx.Client(timeout=30) as client:
            answer = client.post(server.url + PREFIX + "/events", json=event("boom"))
            history = client.get(server.url + PREFIX + "/alerts/events")
            # The streams are ASGI apps of their own too.
            streams = [
                client.get(server.url + PREFIX + p) for p in ("/alerts/stream", "/me/stream")
            ]
    finally:
        server.stop()
    assert (answer.status_code, answer.json()) == (418, HANDLED)
    assert history.status_code == 418, "every route alike"
    assert [(r.status_code, r.json()) for r in streams] == [(418, HANDLED)] * 2
    for reply in (answer, history, *streams):
        assert reply.headers.get("x-tagged") == "yes", reply.request.url


def test_without_starlettes_private_wrapper_the_apps_handlers_still_answer(
    notes: Notifications, monkeypatch: pytest.MonkeyPatch
) -> None:
    # answer_error uses a private name of Starlette's. A Starlette that moved it must not
    # break the plugin: the exception goes up to the app's handlers, above the Mount.
    monkeypatch.setitem(sys.modules, "starlette._exception_handler", None)  # import fails
    server = _failing_authenticate_server(notes)
    try:
        with httpx.Client(timeout=30) as client:
            answers = [
                client.post(server.url + PREFIX + "/events", json=event("boom")),
                client.get(server.url + PREFIX + "/alerts/stream"),
            ]
    finally:
        server.stop()
    for answer in answers:
        assert (answer.status_code, answer.json()) == (418, HANDLED)
        assert "x-tagged" not in answer.headers, "answered above the Mount, as before"


class _Tagged:
    """Middleware marking every answer that passes through it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def tagged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-tagged", b"yes")]
            await send(message)

        await self.app(scope, receive, tagged)


def test_a_head_request_to_a_stream_gets_its_headers_and_no_stream(notes: Notifications) -> None:
    server = ServerThread(
        lambda thread: Starlette(routes=[Mount(PREFIX, app=notify_starlette.routes(notes))])
    ).start()
    try:
        with httpx.Client(timeout=30) as client:
            head = client.head(server.url + PREFIX + "/alerts/stream")
            missing = client.head(server.url + PREFIX + "/no-such-hub/stream")
    finally:
        server.stop()
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"].startswith("text/event-stream")
    assert missing.status_code == 404 and missing.content == b""


def test_every_route_keeps_its_name_for_url_path_for(notes: Notifications) -> None:
    router = notify_starlette.routes(notes)
    assert router.url_path_for("post_event") == "/events"
    assert router.url_path_for("hub_stream", hub_id="alerts") == "/alerts/stream"
    assert router.url_path_for("my_stream") == "/me/stream"
    assert router.url_path_for("my_events") == "/me/events"


def test_post_events_endpoint_keeps_the_methods_names(notes: Notifications) -> None:
    """Tools that name a request after ``scope["endpoint"]`` (tracing, metrics) find the
    same name on POST /events' ASGI app as on the method it was before."""
    router = notify_starlette.routes(notes)
    (route,) = [r for r in router.routes if getattr(r, "name", None) == "post_event"]
    endpoint = route.endpoint  # type: ignore[attr-defined]
    assert endpoint.__name__ == "post_event"
    assert endpoint.__qualname__ == "Endpoints.post_event"
