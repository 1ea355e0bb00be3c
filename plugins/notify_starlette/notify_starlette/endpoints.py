"""The routes: SSE streams, history, sending, and the WebSocket, as one mountable Router.

The routes, replies, errors, heartbeats and frames are the core's
(:mod:`notifycore.web.protocol`); this module binds them to Starlette and
runs them without blocking the event loop: the app's sync ``authenticate``,
``authorize``, ``authorize_send`` and hooks run in worker threads, ``async
def`` ones are awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose

from notify_starlette._shared import drop_connection, flushed_or_dropped, incoming, response
from notify_starlette.inbox_routes import inbox_routes
from notify_starlette.ws import Session
from notifycore.web import Reply, WebOptions, WebProtocol, WebRequest, stream_for_hub
from notifycore.web.access import Authenticate, Authorize, AuthorizeSend
from notifycore.web.calls import arun
from notifycore.web.protocol import ROUTES, no_such_route, other_method

if TYPE_CHECKING:
    from notifycore import Notifications

__all__ = ["routes"]


def _timed_out(exc: BaseException) -> bool:
    """True for a send timeout, alone or grouped with others (the ping and the body at once)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_timed_out(inner) for inner in exc.exceptions)
    return isinstance(exc, TimeoutError)


class _EventStream(EventSourceResponse):
    """sse-starlette's response, where a client that stops reading is dropped, not waited for.

    Every send is bounded by ``send_timeout`` (sse-starlette leaves its last
    one unbounded); past it the connection is aborted. A response that
    ended (at shutdown, say) is completed, then given ``send_timeout`` to
    reach the client; one that does not read is dropped too. A graceful close
    would wait for such a client to read, forever, and hold up the server's
    shutdown.
    """

    def __init__(
        self, *args: Any, on_timeout: Callable[[], Awaitable[None]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_timeout = on_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout = self.send_timeout
        started = complete = False

        async def bounded(message: Message) -> None:
            nonlocal started, complete
            with anyio.fail_after(timeout):
                await send(message)
            started = True
            complete = message["type"] == "http.response.body" and not message.get("more_body")

        try:
            await super().__call__(scope, receive, bounded)
            if started and not complete:  # cut short (shutdown): end the body properly
                await bounded({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception as exc:
            if not _timed_out(exc):
                raise
            await self._on_timeout()
            if drop_connection(receive):
                await anyio.sleep(0)  # let the server see the connection is gone
            return
        if await flushed_or_dropped(receive, timeout):
            await anyio.sleep(0)


class Endpoints:
    """The handlers of one :func:`routes` router: Starlette around the core's protocol."""

    def __init__(self, protocol: WebProtocol) -> None:
        self.protocol = protocol
        self.notifications = protocol.notifications
        self.options = protocol.options

    def incoming(self, conn: HTTPConnection) -> WebRequest:
        return incoming(conn, allow_query_token=self.options.allow_query_token)

    async def principal(self, conn: HTTPConnection) -> Any:
        return await arun(self.protocol.principal(self.incoming(conn)), self.protocol.to_thread)

    # -- SSE ---------------------------------------------------------------------------------

    async def hub_stream(self, request: Request) -> Response:
        return await self.open_stream(request, request.path_params["hub_id"])

    async def my_stream(self, request: Request) -> Response:
        return await self.open_stream(request, None)

    async def open_stream(self, request: Request, hub_id: str | None) -> Response:
        protocol = self.protocol
        body = await protocol.arun(protocol.stream(self.incoming(request), hub_id))
        if isinstance(body, Reply):
            return response(body)

        async def timed_out() -> None:
            body.close()
            await protocol.arun(protocol.report_disconnect("timeout", "sse"))

        return _EventStream(
            body.__aiter__(),
            on_timeout=timed_out,
            headers=body.headers,
            ping=0,  # the protocol's heartbeat comes with the body
            sep="\n",
            send_timeout=self.options.send_timeout,
            # Runs even when the body never started (HEAD, early disconnect).
            background=BackgroundTask(body.close),
        )

    # -- history and sending -----------------------------------------------------------------

    async def hub_events(self, request: Request) -> Response:
        protocol = self.protocol
        hub_id = request.path_params["hub_id"]
        return response(await protocol.arun(protocol.history(self.incoming(request), hub_id)))

    async def my_events(self, request: Request) -> Response:
        protocol = self.protocol
        return response(await protocol.arun(protocol.history(self.incoming(request), None)))

    async def post_event(self, request: Request) -> Response:
        protocol = self.protocol
        return response(await protocol.arun(protocol.send(self.incoming(request))))

    # -- WebSocket ---------------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        # A browser opens a WebSocket from any page, with its cookies: refuse other sites'.
        if self.protocol.cross_site(self.incoming(websocket)) is not None:
            await websocket.close(1008, "cross-site WebSocket refused")
            return
        principal = await self.principal(websocket)
        await Session(self, websocket, principal).run()
        # A client that stopped reading (the session ended on a send timeout, or at shutdown)
        # would hold the connection's graceful close forever. (Starlette keeps ASGI's receive
        # private; uvicorn's holds the transport.)
        await flushed_or_dropped(getattr(websocket, "_receive", None), self.options.send_timeout)

    def resolve(self, name: str, principal: Any) -> str:
        """A WebSocket stream name: ``me``, ``user:<id>``, or a hub label or id."""
        if name == "me":
            stream = self.protocol.access.user_stream(principal)
            if stream is None:
                raise PermissionError("unauthorized")
            return stream
        if name.startswith("user:") and len(name) > len("user:"):
            return name
        return stream_for_hub(self.notifications, name)


def routes(
    notifications: Notifications,
    *,
    authenticate: Authenticate | None = None,
    authorize: Authorize | None = None,
    authorize_send: AuthorizeSend | None = None,
    allow_query_token: bool = False,
    trusted_origins: Iterable[str] = (),
    heartbeat: float = 15.0,
    retry_ms: int = 3000,
    send_timeout: float | None = 10.0,
    max_pending: int | None = None,
    named_events: bool = True,
) -> Router:
    """The notification endpoints, to ``Mount`` at a prefix of a Starlette app.

    ``authenticate(request)`` returns the principal or None (the Bearer
    token, or ``?token=`` with ``allow_query_token``, is on
    ``request.state.token``). ``authorize(principal, stream)`` decides who
    reads which stream (a signed-in user always reads their own);
    ``authorize_send(principal, event)`` who sends what (without it, the
    ``"send"`` permission of ``authorize``, and the sender is the principal).
    Each may be ``async def`` (awaited) or sync (run in a worker thread).
    ``trusted_origins``: other sites whose pages may write with the
    browser's cookies (``POST /events``, the WebSocket).
    ``heartbeat`` is the seconds between comment lines (0: none),
    ``retry_ms`` the reconnection hint, ``send_timeout`` the seconds one
    write to a client may take, ``max_pending`` the messages a client may
    lag before it is disconnected (default: the fan-out's),
    ``named_events=False`` serves frames without ``event:``, which
    ``EventSource.onmessage`` receives.
    """
    options = WebOptions(
        authenticate=authenticate,
        authorize=authorize,
        authorize_send=authorize_send,
        allow_query_token=allow_query_token,
        trusted_origins=tuple(trusted_origins),
        heartbeat=heartbeat,
        retry_ms=retry_ms,
        send_timeout=send_timeout,
        max_pending=max_pending,
        named_events=named_events,
    )
    endpoints = Endpoints(WebProtocol(notifications, options, to_thread=anyio.to_thread.run_sync))
    handlers = {
        "/me/stream": endpoints.my_stream,
        "/me/events": endpoints.my_events,
        "/events": endpoints.post_event,
        "/{hub_id}/stream": endpoints.hub_stream,
        "/{hub_id}/events": endpoints.hub_events,
    }
    # /me/... first (ROUTES' order): a hub labelled "me" is reachable by its hub id only.
    table: list[BaseRoute] = [Route(p, handlers[p], methods=[m]) for p, m in ROUTES]
    table[2:2] = inbox_routes(endpoints.protocol)  # me/inbox..., me/preferences, before {hub_id}
    # Any other method (after the routes: a route's own one reaches it), or a path that is no
    # route: JSON answers too, as on every adapter.
    table += [Route(p, _OtherMethod(m), methods=None) for p, m in ROUTES]
    table.append(WebSocketRoute("/ws", endpoints.websocket))
    return Router(routes=table, default=_no_such_route)


class _OtherMethod:
    """An ASGI app, not a function: Starlette routes a function's route to GET only."""

    def __init__(self, allowed: str) -> None:
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await response(other_method(scope["method"], self.allowed))(scope, receive, send)


async def _no_such_route(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await WebSocketClose()(scope, receive, send)
        return
    await response(no_such_route())(scope, receive, send)
