"""An event loop in a daemon thread: how sync code runs a coroutine to its end.

``send()`` and a worker are sync, yet a consumer or a hook implementation may
be ``async def``: its coroutine runs on a :class:`LoopThread`, and the caller
waits for it (up to a time limit when it has one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any

from notifycore.errors import NotifycoreError

__all__ = ["LoopThread", "TimedOut"]


class TimedOut(NotifycoreError):
    """A coroutine run by :meth:`LoopThread.run` was cancelled at its time limit.

    The delivery layer reports it as a :class:`~notifycore.errors.ConsumerTimeout`.
    """


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class LoopThread:
    """An event loop running in a daemon thread of its own, started at once."""

    def __init__(self, name: str = "notifycore-async") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, awaitable: Awaitable[Any], timeout: float | None = None) -> Any:
        """Run ``awaitable`` on the loop and return its result; past ``timeout`` seconds it
        is cancelled and :class:`TimedOut` raised."""
        coro: Coroutine[Any, Any, Any] = (
            awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if timeout is None:
            return future.result()
        finished, _ = concurrent.futures.wait([future], timeout)
        if not finished and future.cancel():
            raise TimedOut
        return future.result()

    def close(self) -> None:
        """Stop the loop and wait (a little) for its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()
