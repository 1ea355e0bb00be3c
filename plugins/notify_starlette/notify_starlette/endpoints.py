"""The routes: SSE streams, history, sending, and the WebSocket, as one mountable Router.

The routes, replies, errors, heartbeats and frames are the core's
(:mod:`notifycore.web.protocol`); this module binds them to Starlette and
runs them without blocking the event loop: the app's sync ``authenticate``,
``authorize``, ``authorize_send`` and hooks run in worker threads, ``async
def`` ones are awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose

from notify_starlette._shared import (
    SendGuard,
    client_left,
    drop_connection,
    flushed_or_dropped,
    incoming,
    response,
    send_reply,
)
from notify_starlette.inbox_routes import inbox_routes
from notify_starlette.ws import Session
from notifycore.web import EventStream, Reply, WebOptions, WebProtocol, WebRequest, stream_for_hub
from notifycore.web.access import Authenticate, Authorize, AuthorizeSend
from notifycore.web.calls import arun
from notifycore.web.protocol import ROUTES, no_such_route, other_method

if TYPE_CHECKING:
    from notifycore import Notifications

__all__ = ["routes"]


_BODY = "http.response.body"


async def _listen(receive: Receive, body: EventStream) -> None:
    """End the stream when the client leaves: its subscription closes, the writer stops."""
    while (await receive())["type"] != "http.disconnect":
        pass
    body.close()


class _StreamResponse:
    """An SSE response: the protocol's stream, written straight to the ASGI ``send``.

    The request's task writes; one more task listens for the client leaving,
    which closes the subscription and so ends the writer. Nothing else runs
    per connection: the heartbeat is the stream's own, and every write is
    bounded by ``send_timeout`` (:class:`SendGuard`) — a client that stops
    reading is dropped, not waited for. A stream the server ended (shutdown,
    a slow client) is completed, then given ``send_timeout`` to reach the
    client; one that does not read is dropped too: a graceful close would wait
    for it forever and hold up the server's shutdown. A ``HEAD`` gets the
    headers only.
    """

    def __init__(
        self,
        body: EventStream,
        send_timeout: float | None,
        on_timeout: Callable[[], Awaitable[None]],
    ) -> None:
        self.body = body
        self.send_timeout = send_timeout
        self._on_timeout = on_timeout
        self.headers = [(k.lower().encode(), v.encode()) for k, v in body.headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body
        guard = SendGuard(receive, self.send_timeout)
        listener: asyncio.Task[None] | None = None
        try:
            start = {"type": "http.response.start", "status": 200, "headers": self.headers}
            await guard.send(send, start)
            if scope.get("method") == "HEAD":
                await guard.send(send, {"type": _BODY, "body": b"", "more_body": False})
                return
            listener = asyncio.get_running_loop().create_task(_listen(receive, body))
            # The hot path, once per event and client: the read and the timed write awaited
            # here, not through aget_run(), next_chunk() and guard.send() (a coroutine each).
            subscription, wait, chunk_of = body.subscription, body.wait, body.chunk_run
            wait_future, take_run = subscription.wait_future, subscription.take_run
            chunk: bytes | None = body.opening()
            while chunk is not None:
                message = {"type": _BODY, "body": chunk, "more_body": True}
                if guard.watch():
                    try:
                        await send(message)
                    finally:
                        guard.done()
                else:
                    await guard.send(send, message)
                if guard.timed_out:
                    break
                waiter = wait_future(wait)
                if waiter is not None:
                    await waiter
                # Nothing to write (a closed stream, an empty batch): next_chunk() decides.
                chunk = chunk_of(take_run()) or await body.next_chunk()
            else:  # the stream ended: complete the body properly
                await guard.send(send, {"type": _BODY, "body": b"", "more_body": False})
        finally:
            guard.close()
            if listener is not None:
                listener.cancel()
            body.close()
        if guard.timed_out:
            await self._on_timeout()
            if drop_connection(receive) or guard.transport is not None:
                await anyio.sleep(0)  # let the server see the connection is gone
            return
        if await flushed_or_dropped(receive, self.send_timeout):
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

    # The two stream routes are ASGI apps, as post_event is: a Starlette endpoint would put
    # its wrapper on every write of the stream (one more coroutine per event and client), and
    # keep more objects per open connection for the garbage collector to go through.

    async def hub_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve_stream(scope, receive, send, scope["path_params"]["hub_id"])

    async def my_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.serve_stream(scope, receive, send, None)

    async def serve_stream(
        self, scope: Scope, receive: Receive, send: Send, hub_id: str | None
    ) -> None:
        request = Request(scope, receive, send)
        try:
            answer = await self.open_stream(request, hub_id)
        except Exception as exc:
            await answer_error(exc, request, send)
            return
        await answer(scope, receive, send)

    async def open_stream(self, request: Request, hub_id: str | None) -> Response | _StreamResponse:
        protocol = self.protocol
        body = await protocol.arun(protocol.stream(self.incoming(request), hub_id))
        if isinstance(body, Reply):
            return response(body)

        async def timed_out() -> None:
            body.close()
            await protocol.arun(protocol.report_disconnect("timeout", "sse"))

        return _StreamResponse(body, self.options.send_timeout, timed_out)

    # -- history and sending -----------------------------------------------------------------

    async def hub_events(self, request: Request) -> Response:
        protocol = self.protocol
        hub_id = request.path_params["hub_id"]
        return response(await protocol.arun(protocol.history(self.incoming(request), hub_id)))

    async def my_events(self, request: Request) -> Response:
        protocol = self.protocol
        return response(await protocol.arun(protocol.history(self.incoming(request), None)))

    async def post_event(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /events``, the route taken once per event: an ASGI app, not a Starlette
        endpoint, so no wrapper per request and no ``Response`` for the reply. (An exception
        still reaches the app's exception handlers: :func:`answer_error`.) A client that
        leaves before its body is whole gets no answer, and no event is sent."""
        protocol = self.protocol
        request = Request(scope, receive, send)
        try:
            reply = await protocol.arun(protocol.send(self.incoming(request)))
        except ClientDisconnect:  # raised by the body's read: nothing was sent
            client_left(scope)
            return
        except Exception as exc:
            await answer_error(exc, request, send)
            return
        await send_reply(reply, send)

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
    allow_critical: bool = False,
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
    ``EventSource.onmessage`` receives; ``allow_critical=True`` lets
    ``POST events`` carry ``"critical": true`` (refused by default).
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
        allow_critical=allow_critical,
    )
    endpoints = Endpoints(WebProtocol(notifications, options, to_thread=anyio.to_thread.run_sync))
    handlers: dict[str, Callable[..., Any]] = {
        "/me/stream": endpoints.my_stream,
        "/me/events": endpoints.my_events,
        "/events": endpoints.post_event,
        "/{hub_id}/stream": endpoints.hub_stream,
        "/{hub_id}/events": endpoints.hub_events,
    }
    # /me/... first (ROUTES' order): a hub labelled "me" is reachable by its hub id only.
    # POST /events and the streams are ASGI apps (Route takes a non-function as one: see
    # post_event), named as their methods are, for url_path_for.
    asgi = {endpoints.post_event, endpoints.hub_stream, endpoints.my_stream}
    table: list[BaseRoute] = [
        Route(p, _Asgi(handlers[p]), methods=[m], name=handlers[p].__name__)
        if handlers[p] in asgi
        else Route(p, handlers[p], methods=[m])
        for p, m in ROUTES
    ]
    table[2:2] = inbox_routes(endpoints.protocol)  # me/inbox..., me/preferences, before {hub_id}
    # POST /events, the route taken once per event, is tried first: no other route matches
    # its path, so the order changes nothing else.
    table.insert(0, table.pop(next(i for i, r in enumerate(table) if r.path == "/events")))  # type: ignore[attr-defined]
    # Any other method (after the routes: a route's own one reaches it), or a path that is no
    # route: JSON answers too, as on every adapter.
    table += [Route(p, _OtherMethod(m), methods=None) for p, m in ROUTES]
    table.append(WebSocketRoute("/ws", endpoints.websocket))
    return Router(routes=table, default=_no_such_route)


async def answer_error(exc: Exception, request: Request, send: Send) -> None:
    """``exc``, raised before one of the routes that are ASGI apps answered: the app's
    exception handlers answer it here, as they answer a Starlette endpoint's, so middleware
    set on the ``Mount`` or the router (CORS...) sees the answer. With no handler for it,
    it propagates as before. (Starlette's own wrapper for its endpoints, used on this
    error path only: around a stream, it would be one more coroutine per write.)

    The wrapper is a private name of Starlette's, imported here, on the error path: a
    Starlette without it lets ``exc`` propagate to the app's handlers above the ``Mount``,
    as before, rather than fail to import the plugin."""
    wrap = _endpoint_wrapper()
    if wrap is None:
        raise exc  # (the exception being handled: its cause and context stay as they were)

    async def raising(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    await wrap(raising, request)(request.scope, request.receive, send)


def _endpoint_wrapper() -> Callable[[ASGIApp, Request], ASGIApp] | None:
    try:
        from starlette._exception_handler import wrap_app_handling_exceptions
    except ImportError:
        return None
    return wrap_app_handling_exceptions


class _Asgi:
    """An ASGI app calling ``app``: Starlette's Route wraps a function or method as an
    endpoint taking a request, anything else it calls as an ASGI app. It carries ``app``'s
    names, which tools that name a request after ``scope["endpoint"]`` read."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app
        self.__name__ = getattr(app, "__name__", type(self).__name__)
        self.__qualname__ = getattr(app, "__qualname__", self.__name__)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return self.app(scope, receive, send)


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
