"""What the SSE, HTTP and WebSocket endpoints share: process state, authentication, JSON errors."""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import anyio
import anyio.to_thread
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse

from notifycore.sse import FrameCache
from notifycore.web import SEND_PERMISSION, bearer_token

if TYPE_CHECKING:
    from notifycore.backends.base import Backend
    from notifycore.fanout import Fanout, Subscription
    from notifycore.notifications import Notifications
    from notifycore.web import Access

__all__ = [
    "SEND_PERMISSION",
    "ProcessState",
    "authenticate",
    "bearer_token",
    "disconnected",
    "drop_connection",
    "error",
    "flushed_or_dropped",
    "process_state",
    "refusal",
    "subscribe",
]


class ProcessState:
    """Per ``Notifications``: the one frame cache of the process, and the shutdown flag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: FrameCache | None = None
        self._frames_of: weakref.ref[Backend] | None = None
        #: Set once the server began shutting down: new streams are refused with 503.
        self.closing = False

    def frames(self, backend: Backend) -> FrameCache:
        """The frame cache for ``backend``'s ids (a new backend restarts ids, so a new cache)."""
        with self._lock:
            if self._frames is None or self._frames_of is None or self._frames_of() is not backend:
                self._frames = FrameCache()
                self._frames_of = weakref.ref(backend)
            return self._frames


_states: weakref.WeakKeyDictionary[Notifications, ProcessState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def process_state(notifications: Notifications) -> ProcessState:
    """The state shared by every router and lifespan made for ``notifications``."""
    with _states_lock:
        state = _states.get(notifications)
        if state is None:
            state = _states[notifications] = ProcessState()
        return state


def _without_query_token(conn: HTTPConnection) -> HTTPConnection:
    """A copy of ``conn`` whose query string has no ``token``, so authenticate cannot read it."""
    scope = dict(conn.scope)
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "token"]).encode("latin-1")
    return Request(scope) if scope["type"] == "http" else HTTPConnection(scope)


async def authenticate(access: Access, conn: HTTPConnection, *, allow_query_token: bool) -> Any:
    """The principal of a request or WebSocket (None: anonymous).

    The credential found is put on ``conn.state.token`` for the app's
    ``authenticate``: the Bearer header, else ``?token=`` when allowed.
    """
    token = bearer_token(conn.headers.get("authorization"))
    if token is None and allow_query_token:
        token = conn.query_params.get("token") or None
    conn.state.token = token
    if access.authenticate is None:
        return None
    target = conn
    if not allow_query_token and "token" in conn.query_params:
        target = _without_query_token(conn)
    principal = access.principal(target)
    if inspect.isawaitable(principal):
        principal = await principal
    return principal


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """A JSON error answer: ``{"error": code, "message": ..., **extra}``."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status, headers=headers)


def refusal(principal: Any) -> JSONResponse:
    """401 for an anonymous caller, 403 for a known one who may not."""
    if principal is None:
        return error(401, "unauthorized", "authentication required")
    return error(403, "forbidden", "not allowed")


async def subscribe(
    fanout: Fanout, stream: str, after: str | None, max_pending: int | None
) -> Subscription:
    """``fanout.subscribe`` in a worker thread (it reads the backend), never leaking on cancel."""
    made: list[Subscription] = []

    def run() -> None:
        made.append(fanout.subscribe(stream, after, max_pending=max_pending))

    try:
        await anyio.to_thread.run_sync(run)
    except BaseException:
        for subscription in made:  # cancelled while the thread finished: nobody else closes it
            subscription.close()
        raise
    return made[0]


def disconnected(notifications: Notifications, reason: str, transport: str) -> None:
    """Report a stream the server ended (``slow``, ``shutdown``) as a metric."""
    notifications.plugins.metric(
        "streams.disconnected", 1, {"reason": reason, "transport": transport}
    )


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
