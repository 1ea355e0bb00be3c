"""The routes: SSE streams, history, sending, and the WebSocket, as one mountable Router."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from notify_starlette._shared import (
    authenticate,
    disconnected,
    drop_connection,
    error,
    flushed_or_dropped,
    process_state,
    refusal,
    subscribe,
)
from notify_starlette.ws import Session
from notifycore.errors import ConsumerError, InvalidEvent, InvalidStreamId, UnknownHub
from notifycore.sse import HEADERS, comment, reset_frame, retry_frame
from notifycore.web import (
    Access,
    AuthorizeSend,
    client_stream_id,
    cross_site_refusal,
    is_json,
    resume_id,
    stream_for_hub,
    unknown_hub_message,
)

if TYPE_CHECKING:
    from notifycore.fanout import Subscription
    from notifycore.notifications import Notifications

__all__ = ["routes"]

#: ``aget`` wakes at least this often, so a lost wake-up can never stall a stream.
_WAKE_SECONDS = 30.0
#: Largest ``limit`` of ``GET /{hub_id}/events``.
MAX_HISTORY = 1000


class _Heartbeat(ServerSentEvent):
    """sse-starlette's ping, written as notifycore's heartbeat comment."""

    def encode(self) -> bytes:
        return comment("heartbeat")


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

    def __init__(self, *args: Any, on_timeout: Callable[[], None], **kwargs: Any) -> None:
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
            self._on_timeout()
            if drop_connection(receive):
                await anyio.sleep(0)  # let the server see the connection is gone
            return
        if await flushed_or_dropped(receive, timeout):
            await anyio.sleep(0)


class Endpoints:
    """The handlers of one :func:`routes` router, sharing its access rules and options."""

    def __init__(
        self,
        notifications: Notifications,
        access: Access,
        *,
        allow_query_token: bool,
        heartbeat: float,
        retry_ms: int,
        send_timeout: float | None,
        max_pending: int | None,
        trusted_origins: Iterable[str] = (),
    ) -> None:
        self.notifications = notifications
        self.access = access
        self.allow_query_token = allow_query_token
        self.trusted_origins = tuple(trusted_origins)
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self.send_timeout = send_timeout
        self.max_pending = max_pending
        self.state = process_state(notifications)

    async def principal(self, conn: Request | WebSocket) -> Any:
        return await authenticate(self.access, conn, allow_query_token=self.allow_query_token)

    # -- SSE ---------------------------------------------------------------------------------

    async def readable(self, request: Request, *, own: bool) -> str | Response:
        """The stream the request may read (the hub's, or with ``own`` the user's), or the refusal."""
        principal = await self.principal(request)
        if own:
            stream = self.access.user_stream(principal)
            if stream is None:
                return refusal(None)
        else:
            try:
                stream = stream_for_hub(self.notifications, request.path_params["hub_id"])
            except UnknownHub as exc:
                return JSONResponse(unknown_hub_message(exc), 404)
        if not self.access.allows(principal, stream):
            return refusal(principal)
        return stream

    async def hub_stream(self, request: Request) -> Response:
        stream = await self.readable(request, own=False)
        return stream if isinstance(stream, Response) else await self.open_stream(request, stream)

    async def my_stream(self, request: Request) -> Response:
        stream = await self.readable(request, own=True)
        return stream if isinstance(stream, Response) else await self.open_stream(request, stream)

    async def open_stream(self, request: Request, stream: str) -> Response:
        if self.state.closing:
            return error(503, "shutting_down", "the server is shutting down; reconnect")
        try:
            after = resume_id(
                request.headers.get("last-event-id"), request.query_params.get("lastEventId")
            )
            subscription = await subscribe(
                self.notifications.fanout, stream, after, self.max_pending
            )
        except InvalidStreamId as exc:
            return error(400, "bad_request", f"malformed Last-Event-ID: {exc}")

        def timed_out() -> None:
            subscription.close()
            disconnected(self.notifications, "timeout", "sse")

        return _EventStream(
            self.frames(subscription, stream, after),
            on_timeout=timed_out,
            headers=HEADERS,
            ping=self.heartbeat,
            sep="\n",
            ping_message_factory=_Heartbeat,
            send_timeout=self.send_timeout,
            # Runs even when the body never started (HEAD, early disconnect).
            background=BackgroundTask(subscription.close),
        )

    async def frames(
        self, subscription: Subscription, stream: str, after: str | None
    ) -> AsyncIterator[bytes]:
        """The response body: the retry hint, then one chunk of cached frames per batch."""
        cache = self.state.frames(self.notifications.fanout.backend)
        position = after
        try:
            yield retry_frame(self.retry_ms)
            while True:
                batch = await subscription.aget(_WAKE_SECONDS)
                if subscription.closed:
                    # Slow or shutting down: end now; the client resumes with Last-Event-ID.
                    reason = subscription.closed_reason or "closed"
                    if reason != "closed":
                        disconnected(self.notifications, reason, "sse")
                    return
                if batch is None:
                    continue
                parts = [reset_frame(stream, position)] if batch.reset else []
                parts.extend(cache.get(stream, message) for message in batch.messages)
                if batch.messages:
                    position = batch.messages[-1].id
                if parts:
                    yield b"".join(parts)
        finally:
            subscription.close()

    # -- history -----------------------------------------------------------------------------

    async def hub_events(self, request: Request) -> Response:
        stream = await self.readable(request, own=False)
        return stream if isinstance(stream, Response) else await self.history(request, stream)

    async def my_events(self, request: Request) -> Response:
        stream = await self.readable(request, own=True)
        return stream if isinstance(stream, Response) else await self.history(request, stream)

    async def history(self, request: Request, stream: str) -> Response:
        try:
            since = client_stream_id(request.query_params.get("since"), "since")
        except InvalidStreamId as exc:
            return error(400, "bad_request", f"malformed since: {exc}")
        raw_limit = request.query_params.get("limit", str(MAX_HISTORY))
        if (
            not (raw_limit.isascii() and raw_limit.isdigit())
            or not 0 < int(raw_limit) <= MAX_HISTORY
        ):
            return error(400, "bad_request", f"limit must be an integer from 1 to {MAX_HISTORY}")
        limit = int(raw_limit)
        backend = self.notifications.backend
        try:
            read = await anyio.to_thread.run_sync(lambda: backend.read(stream, since, limit=limit))
        except InvalidStreamId as exc:
            return error(400, "bad_request", f"malformed since: {exc}")
        # The stored event JSON is embedded as it is: parsed and re-serialised by no one.
        items = b",".join(
            b'{"id":' + json.dumps(m.id).encode() + b',"event":' + m.data + b"}"
            for m in read.messages
        )
        reset = b"true" if read.reset else b"false"
        return Response(
            b'{"events":[' + items + b'],"reset":' + reset + b"}",
            media_type="application/json",
            headers={"Cache-Control": "no-cache"},
        )

    # -- sending -----------------------------------------------------------------------------

    def cross_site(self, conn: HTTPConnection) -> str | None:
        """Why a request riding on the browser's credentials is refused as cross-site, or None."""
        return cross_site_refusal(
            authorization=conn.headers.get("authorization"),
            origin=conn.headers.get("origin"),
            fetch_site=conn.headers.get("sec-fetch-site"),
            host=conn.headers.get("host"),
            trusted_origins=self.trusted_origins,
        )

    async def post_event(self, request: Request) -> Response:
        cross_site = self.cross_site(request)
        if cross_site is not None:
            return error(403, "forbidden", cross_site)
        if not is_json(request.headers.get("content-type")):
            return error(
                415, "unsupported_media_type", "send the event as Content-Type: application/json"
            )
        principal = await self.principal(request)
        limit: int = self.notifications.settings["MAX_EVENT_SIZE"]
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:  # stop reading: the event is refused whatever follows
                return _invalid(InvalidEvent("event", f"is over the limit of {limit} bytes"))
        try:
            event = self.notifications.coerce_event(bytes(body))
            allowed = self.access.sendable(principal, event)  # the sender it sets is checked too
        except InvalidEvent as exc:
            return _invalid(exc)
        if allowed is None:
            return refusal(principal)
        try:
            # A thread: sync consumers (SMTP...) must not block the event loop.
            result = await anyio.to_thread.run_sync(self.notifications.send, allowed)
        except InvalidEvent as exc:
            return _invalid(exc)
        except ConsumerError as exc:
            return error(500, "consumer_failed", str(exc), event_id=exc.result.event.event_id)
        return JSONResponse(
            {
                "event_id": result.event.event_id,
                "sender": result.event.sender,
                "hubs": result.hubs,
                "consumers": [
                    {"hub": o.hub, "consumer": o.consumer, "status": str(o.status)}
                    for o in result.outcomes
                ],
            },
            202,
        )

    # -- WebSocket ---------------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        # A browser opens a WebSocket from any page, with its cookies: refuse other sites'.
        if self.cross_site(websocket) is not None and not (
            self.allow_query_token and websocket.query_params.get("token")
        ):
            await websocket.close(1008, "cross-site WebSocket refused")
            return
        principal = await self.principal(websocket)
        await Session(self, websocket, principal).run()
        # A client that stopped reading (the session ended on a send timeout, or at shutdown)
        # would hold the connection's graceful close forever. (Starlette keeps ASGI's receive
        # private; uvicorn's holds the transport.)
        await flushed_or_dropped(getattr(websocket, "_receive", None), self.send_timeout)

    def resolve(self, name: str, principal: Any) -> str:
        """A WebSocket stream name: ``me``, ``user:<id>``, or a hub label or id."""
        if name == "me":
            stream = self.access.user_stream(principal)
            if stream is None:
                raise PermissionError("unauthorized")
            return stream
        if name.startswith("user:") and len(name) > len("user:"):
            return name
        return stream_for_hub(self.notifications, name)


def _invalid(exc: InvalidEvent) -> JSONResponse:
    return error(422, "invalid_event", exc.message, field=exc.field)


def routes(
    notifications: Notifications,
    *,
    authenticate: Callable[[Any], Any] | None = None,
    authorize: Callable[[Any, str], bool] | None = None,
    authorize_send: AuthorizeSend | None = None,
    allow_query_token: bool = False,
    trusted_origins: Iterable[str] = (),
    heartbeat: float = 15.0,
    retry_ms: int = 3000,
    send_timeout: float | None = 10.0,
    max_pending: int | None = None,
) -> Router:
    """The notification endpoints, to ``Mount`` at a prefix of a Starlette app.

    ``authenticate(request)`` returns the principal or None (it may be async;
    the Bearer token, or ``?token=`` with ``allow_query_token``, is on
    ``request.state.token``). ``authorize(principal, stream)`` decides who
    reads which stream (a signed-in user always reads their own);
    ``authorize_send(principal, event)`` who sends what (without it, the
    ``"send"`` permission of ``authorize``, and the sender is the principal).
    ``trusted_origins``: other sites whose pages may write with the
    browser's cookies (``POST /events``, the WebSocket).
    ``heartbeat`` is the seconds between comment lines (0: none),
    ``retry_ms`` the reconnection hint, ``send_timeout`` the seconds one
    write to a client may take, ``max_pending`` the messages a client may
    lag before it is disconnected (default: the fan-out's).
    """
    if heartbeat < 0:
        raise ValueError("heartbeat must be >= 0 (0 disables it)")
    if retry_ms < 0:
        raise ValueError("retry_ms must be >= 0")
    if send_timeout is not None and send_timeout <= 0:
        raise ValueError("send_timeout must be > 0 or None")
    if max_pending is not None and max_pending < 1:
        raise ValueError("max_pending must be >= 1")
    endpoints = Endpoints(
        notifications,
        Access(notifications, authenticate, authorize, authorize_send),
        allow_query_token=allow_query_token,
        trusted_origins=trusted_origins,
        heartbeat=heartbeat,
        retry_ms=retry_ms,
        send_timeout=send_timeout,
        max_pending=max_pending,
    )
    return Router(
        routes=[
            # /me/... first: a hub labelled "me" is reachable by its hub id only.
            Route("/me/stream", endpoints.my_stream, methods=["GET"]),
            Route("/me/events", endpoints.my_events, methods=["GET"]),
            Route("/events", endpoints.post_event, methods=["POST"]),
            Route("/{hub_id}/stream", endpoints.hub_stream, methods=["GET"]),
            Route("/{hub_id}/events", endpoints.hub_events, methods=["GET"]),
            WebSocketRoute("/ws", endpoints.websocket),
        ]
    )
