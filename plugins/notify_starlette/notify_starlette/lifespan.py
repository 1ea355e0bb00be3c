"""The lifespan that ends every open stream when the server shuts down.

uvicorn (and servers like it) send the ASGI ``lifespan.shutdown`` only after
every connection has closed, and an SSE stream never closes by itself. So the
lifespan also watches for the shutdown to *begin* (a signal caught by
uvicorn, sse-starlette's flag, or a ``should_exit`` callable) and then closes
``notifications.fanout``: every subscription ends with reason ``shutdown``,
every SSE response finishes and every WebSocket is closed with code 1012, well
within the server's grace period. At the end it waits (up to ``SEND_GRACE``
seconds) for the ``POST /events`` sends still running on the event loop, so
a server that cancelled their requests does not cut them half-way.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from sse_starlette.sse import AppStatus

from notifycore.web import process_state
from notifycore.web.calls import finish_running

if TYPE_CHECKING:
    from notifycore import Notifications

__all__ = ["close_streams", "lifespan"]

logger = logging.getLogger("notify_starlette")
#: Seconds the shutdown waits for the sends still running on the loop.
SEND_GRACE = 30.0


def _server_exiting() -> bool:
    """True once a uvicorn server that caught SIGTERM/SIGINT in this process is stopping."""
    if AppStatus.should_exit:
        return True
    # uvicorn installs a bound method of its Server as the handler (main thread only).
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return getattr(server, "should_exit", False) is True


async def close_streams(notifications: Notifications) -> None:
    """End every open stream of ``notifications`` now and refuse new ones (503)."""
    state = process_state(notifications)
    state.closing = True
    # close() joins the followers' threads: not on the event loop.
    await anyio.to_thread.run_sync(notifications.fanout.close)


async def _watch(
    notifications: Notifications, should_exit: Callable[[], bool] | None, poll: float
) -> None:
    while True:
        try:
            exiting = _server_exiting() or (should_exit is not None and bool(should_exit()))
        except Exception:  # a broken callable must not end the app's lifespan
            logger.exception("should_exit raised; ignoring it")
            exiting = False
        if exiting:
            await close_streams(notifications)
            return
        await anyio.sleep(poll)


def lifespan(
    notifications: Notifications,
    *,
    should_exit: Callable[[], bool] | None = None,
    poll: float = 0.25,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Starlette ``lifespan=`` that closes ``notifications.fanout`` streams on shutdown.

    ``should_exit`` is an extra test of the shutdown having begun (for a
    server run in a thread: ``lambda: server.should_exit``); it is polled
    every ``poll`` seconds, like uvicorn's own signal flag. The streams are
    closed again when the lifespan ends. ``notifications`` itself is left
    open: close it yourself if nothing else uses it.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        state = process_state(notifications)
        state.closing = False
        app_state = getattr(app, "state", None)
        if app_state is not None:
            app_state.notifications = notifications
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_watch, notifications, should_exit, poll)
                try:
                    yield
                finally:
                    tasks.cancel_scope.cancel()
        finally:
            await close_streams(notifications)
            # A send awaited on the loop outlives a request the server cancelled: let it end
            # before the loop does, as a send in a worker thread would.
            if not await finish_running(SEND_GRACE):
                logger.error("sends still running after %s s at shutdown", SEND_GRACE)

    return run
