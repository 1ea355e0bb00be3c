"""The connection layer: redis-py clients (sync, and async on a loop thread), errors, URLs.

Everything that talks to the server goes through :class:`RedisConnection`:
the sync client with its retry policy, a ``redis.asyncio`` client on one event
loop thread of its own (so async callers on any loop share it), Lua scripts
registered on both, and the translation of redis-py's errors into notifycore's
(``BackendUnavailable`` for an unreachable server), naming the server but never
its password. Sentinel and cluster clients (issue 16) are built here too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from notifycore.errors import BackendError, BackendUnavailable

__all__ = ["CONNECTION_ERRORS", "MAX_BLOCK", "RedisConnection", "adrive", "drive", "safe_url"]

T = TypeVar("T")

#: Errors after which a command may succeed on another try.
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError)
#: Longest single ``XREAD BLOCK``; longer waits loop (kept below the socket timeout).
MAX_BLOCK = 20.0


def safe_url(url: str) -> str:
    """The URL without its password (in the user part or the query), for messages and logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    if parts.query:
        pairs = [
            (k, "***" if k.lower() in ("password", "username") else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(pairs, safe="*"))
    return urlunsplit(parts)


class RedisConnection:
    """The clients of one backend: ``client`` (sync) and an async client on a loop thread."""

    def __init__(self, url: str, *, retries: int) -> None:
        self.url = url
        self.retries = retries
        self.safe_url = safe_url(url)
        self._options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": MAX_BLOCK + 10,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            "retry_on_error": list(CONNECTION_ERRORS),
            # One connection per followed stream (a blocking read each), as many streams as
            # users: no cap (redis-py 8 caps a pool at 100, which ended every route then).
            "max_connections": 2**31,
        }
        try:
            # redis-py's reply types are loose unions; replies are checked where they are used.
            self.client: Any = redis.Redis.from_url(url, **self._options)
        except ValueError as exc:
            raise BackendError(f"invalid REDIS_URL {self.safe_url!r}: {exc}") from exc
        self._scripts: dict[str, Any] = {}
        self._ascripts: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self.aclient: Any = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()
        loop, self._loop = self._loop, None
        if loop is not None:
            if self.aclient is not None:
                asyncio.run_coroutine_threadsafe(self.aclient.aclose(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(10)
            loop.close()

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """Turn redis-py's errors into notifycore's, naming the server (never its password)."""
        try:
            yield
        except CONNECTION_ERRORS as exc:
            raise BackendUnavailable(
                f"Redis at {self.safe_url} is unavailable ({what}, after {self.retries} retries): {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise BackendError(f"Redis at {self.safe_url} refused {what}: {exc}") from exc

    def script(self, lua: str) -> Any:
        """The sync client's callable for ``lua`` (``EVALSHA``, loading it when the server lost it)."""
        found = self._scripts.get(lua)
        if found is None:
            found = self._scripts[lua] = self.client.register_script(lua)
        return found

    # -- async: one redis.asyncio client on one loop thread of this backend -----------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run ``coro`` on the connection's loop thread; await the result on the caller's loop."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(
                    target=self._loop.run_forever, name="notify-redis-async", daemon=True
                )
                self._loop_thread.start()
                self.aclient = redis.asyncio.Redis.from_url(self.url, **self._options)
            loop = self._loop
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def ascript(self, lua: str) -> Any:
        """The async client's callable for ``lua``; only on the loop thread (inside ``submit``)."""
        found = self._ascripts.get(lua)
        if found is None:
            found = self._ascripts[lua] = self.aclient.register_script(lua)
        return found


# -- running a plan: the logic of a wait is written once, the I/O twice ----------------------

R = TypeVar("R")


def drive(plan: Generator[Any, Any, R], call: Callable[[Any], Any]) -> R:
    """Run ``plan``: each request it yields goes to ``call``, whose reply is sent back in."""
    try:
        request = next(plan)
        while True:
            request = plan.send(call(request))
    except StopIteration as done:
        return cast(R, done.value)


async def adrive(plan: Generator[Any, Any, R], call: Callable[[Any], Awaitable[Any]]) -> R:
    """:func:`drive` with an async ``call``."""
    try:
        request = next(plan)
        while True:
            request = plan.send(await call(request))
    except StopIteration as done:
        return cast(R, done.value)
