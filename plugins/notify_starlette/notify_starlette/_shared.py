"""What the SSE, HTTP and WebSocket endpoints share: requests in, replies out, dropping clients."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Scope

from notifycore.web import Reply, WebRequest, bearer_token

__all__ = [
    "SendGuard",
    "client_left",
    "drop_connection",
    "flushed_or_dropped",
    "incoming",
    "response",
    "send_reply",
]


def _without_query_token(conn: HTTPConnection) -> HTTPConnection:
    """A copy of ``conn`` whose query string has no ``token``, so authenticate cannot read it."""
    scope = dict(conn.scope)
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "token"]).encode("latin-1")
    return Request(scope) if scope["type"] == "http" else HTTPConnection(scope)


class _Headers:
    """A request's headers for the protocol, by lower-case name: what Starlette's
    ``Headers.get`` answers (the first of a repeated header), each name decoded once.

    The protocol looks up a handful per request, most of them absent (``Origin``,
    ``Cookie``...), which ``Headers.get`` answers by scanning the list and raising
    ``KeyError``.
    """

    __slots__ = ("_found",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        # Reversed: the first of a repeated header is the one kept, as Headers.get's.
        self._found = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(raw)}

    def get(self, key: str, /) -> str | None:
        return self._found.get(key.lower())

    def __contains__(self, key: str, /) -> bool:
        return key.lower() in self._found


class _NoQuery:
    """The query of a request without a query string (POST /events'): nothing to parse."""

    __slots__ = ()

    def get(self, key: str, /) -> str | None:
        return None

    def __contains__(self, key: str, /) -> bool:
        return False


_NO_QUERY = _NoQuery()


def incoming(conn: HTTPConnection, *, allow_query_token: bool) -> WebRequest:
    """The protocol's view of a request or WebSocket handshake.

    The credential found is put on ``conn.state.token`` for the app's
    ``authenticate``: the Bearer header, else ``?token=`` when allowed.
    """
    scope = conn.scope
    # As Starlette's Headers does: the scope's headers as a list (ASGI allows any iterable).
    raw = scope["headers"]
    if type(raw) is not list:
        raw = scope["headers"] = list(raw)
    headers = _Headers(raw)
    query = conn.query_params if scope.get("query_string") else _NO_QUERY
    token = bearer_token(headers.get("authorization"))
    if token is None and allow_query_token:
        token = query.get("token") or None
    conn.state.token = token
    return WebRequest(
        native=conn,
        headers=headers,
        query=query,
        host=headers.get("host"),
        # The server's view: uvicorn applies X-Forwarded-Proto from its trusted proxies. (The
        # scope's, as conn.url's is: without building a URL each connection would keep.)
        scheme=scope.get("scheme", "http"),
        without_query_token=_without_query_token,
        read_body=_body_reader(conn) if isinstance(conn, Request) else None,
    )


def _body_reader(request: Request) -> Callable[[int], Awaitable[bytes]]:
    async def read(limit: int) -> bytes:
        """The body, no further than the chunk that goes past ``limit`` (then it is refused)."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                break
        return bytes(body)

    return read


logger = logging.getLogger("notify_starlette")


def client_left(scope: Scope) -> None:
    """Note, at debug level, a client that left while sending its body (Starlette's
    ``ClientDisconnect``): nothing was done with the part that came, nobody is left to answer."""
    logger.debug("the client left while sending the body of %s %s", scope["method"], scope["path"])


def response(reply: Reply) -> Response:
    return Response(reply.body, reply.status, headers=dict(reply.headers))


async def send_reply(reply: Reply, send: Callable[[Any], Awaitable[None]]) -> None:
    """Write ``reply`` to an HTTP ASGI ``send``: the two messages :func:`response`'s
    ``Response`` would send (the same headers, ``content-length`` added the same way),
    without making one."""
    status, body = reply.status, reply.body
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    if not (status < 200 or status in (204, 304)) and all(
        k != b"content-length" for k, _ in headers
    ):
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _transport(receive: Callable[[], Awaitable[Any]] | None) -> Any:
    """The server's transport behind an ASGI ``receive``, or None when out of reach.

    ASGI has no way to abort a connection; uvicorn's ``receive`` is a method
    of the connection's cycle (HTTP) or protocol (WebSocket), which holds it.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    return transport if callable(getattr(transport, "abort", None)) else None


def drop_connection(receive: Callable[[], Awaitable[Any]]) -> bool:
    """Abort the client's connection now, its unsent data discarded; False if out of reach.

    For a client that stopped reading: a graceful close would wait for it to
    read what is buffered, forever, and keep the server from shutting down.
    """
    transport = _transport(receive)
    if transport is None:
        return False
    transport.abort()
    return True


async def flushed_or_dropped(
    receive: Callable[[], Awaitable[Any]] | None, timeout: float | None
) -> bool:
    """Give what the server still buffers ``timeout`` seconds to go out, else drop the client.

    True when the connection was dropped.
    """
    transport = _transport(receive)
    if transport is None or timeout is None:
        return False
    with anyio.move_on_after(timeout):
        while transport.get_write_buffer_size():
            await anyio.sleep(0.05)
    if transport.get_write_buffer_size():
        transport.abort()
        return True
    return False


class SendGuard:
    """Bounds every write to one client by ``timeout`` seconds; past it, the client is dropped.

    Under uvicorn a write waits only while the client's socket buffer is
    full, so instead of a timer per write, one timer per connection looks,
    when due, for a write waiting longer than ``timeout`` and then aborts the
    connection — which ends that write. (A timer per write costs more than
    the write when a thousand clients each get every event.) A server whose
    transport is out of reach gets ``asyncio.timeout`` around each write.
    ``timed_out`` tells the writer to stop; ``timeout=None``: no bound.
    """

    __slots__ = ("_loop", "_since", "_timer", "timed_out", "timeout", "transport")

    def __init__(self, receive: Callable[[], Awaitable[Any]] | None, timeout: float | None) -> None:
        self.timeout = timeout
        self.transport = _transport(receive)
        #: True once a write took too long: the connection is (being) dropped.
        self.timed_out = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def send(self, send: Callable[[Any], Awaitable[None]], message: Any) -> None:
        timeout = self.timeout
        if timeout is None:
            await send(message)
            return
        if self.transport is None:
            bound = asyncio.timeout(timeout)
            try:
                async with bound:
                    await send(message)
            except TimeoutError:
                if not bound.expired():
                    raise
                self.timed_out = True
            return
        self.watch()
        try:
            await send(message)
        finally:
            self._since = None

    def watch(self) -> bool:
        """Time a write the caller awaits itself, then calls :meth:`done`; False: no timer
        here (no bound, or no transport): write with :meth:`send` instead.

        (The streaming loop's hot path: one coroutine less per write than :meth:`send`.)
        """
        timeout = self.timeout
        if timeout is None or self.transport is None:
            return False
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._since = now = loop.time()
        if self._timer is None:
            self._timer = loop.call_at(now + timeout, self._check)
        return True

    def done(self) -> None:
        """The write :meth:`watch` timed is over."""
        self._since = None

    def _check(self) -> None:
        self._timer = None
        since, loop = self._since, self._loop
        if since is None or loop is None or self.timeout is None:
            return  # no write waiting: the next one sets the timer again
        due = since + self.timeout
        if loop.time() >= due:
            self.timed_out = True
            self.transport.abort()
        else:
            self._timer = loop.call_at(due, self._check)

    def close(self) -> None:
        """Cancel the timer (call it from the connection's event loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
