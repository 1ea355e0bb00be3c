"""The connection layer: redis-py clients (sync, and async on a loop thread), errors, URLs.

Everything that talks to the server goes through :class:`RedisConnection`:
the sync client with its retry policy, a ``redis.asyncio`` client on one event
loop thread of its own (so async callers on any loop share it), Lua scripts
registered on both, and the translation of redis-py's errors into notifycore's
(``BackendUnavailable`` for an unreachable server), naming the server but never
its password. Sentinel and cluster clients (issue 16) are built here too.

The hot path — publish, the follower's read, enqueue, reserve, ack — goes
through a **lane** (:class:`Lane`): one connection per thread, taken from the
client's pool at the thread's first command and given back when the thread
ends. A command on it is packed once and written and read on that connection,
with the client's retry policy, skipping what redis-py does around every
command of the client (taking a connection from the pool and giving it back,
events, metrics): about half of what a command costs the client here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from notifycore.errors import BackendError, BackendUnavailable

__all__ = [
    "CONNECTION_ERRORS",
    "MAX_BLOCK",
    "Lane",
    "RedisConnection",
    "adrive",
    "drive",
    "pack",
    "safe_url",
]

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


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (RESP): ``str`` as UTF-8, ``bytes`` as they are,
    ``int`` in decimal."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def _give_back(pool: Any, box: list[Any], pid: int) -> None:
    """A lane's thread ended: its connection goes back to the pool (never across a fork)."""
    conn, box[0] = box[0], None
    if conn is not None and os.getpid() == pid:
        pool.release(conn)


class Lane:
    """One thread's own connection (taken from the pool at its first command), and what
    that thread's calls carry: its publisher slot (idempotent publishes and enqueues) and a
    source of tokens and receipts."""

    __slots__ = ("__weakref__", "_box", "_count", "_seed", "pid", "pool", "publisher")

    def __init__(self, pool: Any, consumer: str) -> None:
        self.pool = pool
        self.pid = os.getpid()
        #: This thread's slot among the publishers of a stream or queue (the pid: a forked
        #: child has its parent's backend, and maybe the same thread ident).
        self.publisher = f"{consumer}:{self.pid}:{threading.get_ident()}"
        self._seed = os.urandom(8).hex()
        self._count = 0
        self._box: list[Any] = [None]
        weakref.finalize(self, _give_back, pool, self._box, self.pid)

    @property
    def conn(self) -> Any:
        """The connection (connecting it first, the first time)."""
        conn = self._box[0]
        if conn is None:
            conn = self._box[0] = self.pool.get_connection()
        return conn

    def token(self) -> str:
        """A string no other call of any thread or process uses: random per lane, counted
        per call (a thread ident is reused by a later thread, a lane never)."""
        self._count += 1
        return f"{self._seed}{self._count:x}"


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
        self._shas: dict[str, str] = {}
        self._backoff = ExponentialBackoff(cap=0.5, base=0.05)
        self._local = threading.local()
        #: Names this backend's lanes' publisher slots (set by the backend).
        self.consumer = "notifycore"
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

    # -- the lane: this thread's connection, for the hot path --------------------------------

    def lane(self) -> Lane:
        """This thread's lane (made at its first command, and again after a fork)."""
        lane: Lane | None = getattr(self._local, "lane", None)
        if lane is None or lane.pid != os.getpid():
            lane = self._local.lane = Lane(self.client.connection_pool, self.consumer)
        return lane

    def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one write and read their replies, on this thread's lane.

        A connection error closes the connection and the whole call is sent again, with
        back-off, ``retries`` times at most (as the client's retry policy does); a reply
        that is an error raises it once every reply is read, so the connection stays in step.
        """
        packed = [b"".join(pack(command) for command in commands)]
        failures = 0
        while True:
            conn = None
            try:
                conn = self.lane().conn  # its first connect may fail too: tried again here
                conn.send_packed_command(packed, check_health=False)
                replies = []
                failed: redis.ResponseError | None = None
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
                        failed = failed or exc
            except CONNECTION_ERRORS:
                if conn is not None:
                    conn.disconnect()
                failures += 1
                if failures > self.retries:
                    raise
                time.sleep(self._backoff.compute(failures))
                continue
            except BaseException:
                if conn is not None:
                    conn.disconnect()  # interrupted half-way: the replies would be out of step
                raise
            if failed is not None:
                raise failed
            return replies

    def evalsha(self, lua: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script by its SHA1 on this thread's lane, loading it when the server has
        not got it (a restart, ``SCRIPT FLUSH``)."""
        sha = self._shas.get(lua)
        if sha is None:
            sha = self._shas[lua] = hashlib.sha1(lua.encode()).hexdigest()
        try:
            return self.execute(("EVALSHA", sha, len(keys), *keys, *args))[0]
        except redis.exceptions.NoScriptError:
            self.execute(("SCRIPT", "LOAD", lua))
            return self.execute(("EVALSHA", sha, len(keys), *keys, *args))[0]

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
