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
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)
from redis.retry import Retry

from notifycore.errors import BackendError, BackendUnavailable, ConfigurationError
from notifycore.settings import mask_url

__all__ = [
    "CONNECTION_ERRORS",
    "MAX_BLOCK",
    "SCHEMES",
    "Lane",
    "RedisConnection",
    "ReplicationTimeout",
    "Target",
    "adrive",
    "drive",
    "pack",
    "parse_url",
    "safe_url",
]

T = TypeVar("T")

#: Errors after which a command may succeed on another try.
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError)
#: A Redis Cluster's answers while its slots move or a master fails over: tried again
#: (after following the redirection), then ``BackendUnavailable``.
CLUSTER_ERRORS = (AskError, ClusterDownError, TryAgainError, RedisClusterException)
#: The URL forms REDIS_URL takes.
SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://")
#: Options a ``redis+sentinel://`` URL's query may carry (the Sentinels' own credentials).
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
#: Longest single ``XREAD BLOCK``; longer waits loop (kept below the socket timeout).
MAX_BLOCK = 20.0


def safe_url(url: str) -> str:
    """The URL without its password (in the user part or the query), for messages and logs."""
    return mask_url(url)


class ReplicationTimeout(BackendUnavailable):
    """A write was made on the master but fewer replicas than ``REDIS_WAIT_REPLICAS``
    confirmed it within ``REDIS_WAIT_TIMEOUT``: a failover now could lose it, so the call
    is not acknowledged (sending it again may store it twice)."""


@dataclass(frozen=True)
class Target:
    """What a ``redis+cluster://`` or ``redis+sentinel://`` URL names."""

    #: ``"cluster"`` or ``"sentinel"``
    kind: str
    #: the cluster's startup nodes, or the Sentinels
    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    #: Sentinel: the monitored master's name, and the database number
    service: str = ""
    db: int = 0
    options: tuple[tuple[str, str], ...] = ()


def _invalid(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"REDIS_URL {safe_url(url)!r} is not a valid Redis URL: {why}")


def _host_port(url: str, text: str) -> tuple[str, int]:
    if text.startswith("["):  # [::1]:6379
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
        if not _:
            host, port_text = text, ""
    if not host:
        raise _invalid(url, f"a host is missing in {text!r}")
    if not port_text:
        return host, 6379
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _invalid(url, f"the port of {host!r} is not a number from 1 to 65535")
    return host, int(port_text)


def parse_url(url: str) -> Target:
    """A ``redis+cluster://[user:password@]h:p[,h:p...]/`` or
    ``redis+sentinel://[user:password@]h:p[,h:p...]/<service>[/<db>][?sentinel_password=...]``
    URL; ``ConfigurationError`` naming REDIS_URL (masked) when it is not one."""
    scheme, _, rest = url.partition("://")
    kind = {"redis+cluster": "cluster", "redis+sentinel": "sentinel"}.get(scheme)
    if kind is None:
        raise _invalid(url, "the scheme is not redis+cluster:// or redis+sentinel://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts_text = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not hosts_text:
        raise _invalid(url, "no host:port is given")
    hosts = tuple(_host_port(url, part.strip()) for part in hosts_text.split(","))
    options = tuple(parse_qsl(query, keep_blank_values=True))
    allowed = _SENTINEL_OPTIONS if kind == "sentinel" else ()
    for key, _value in options:
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise _invalid(url, f"unknown option {key!r} (known: {known})")
    if kind == "cluster":
        if path.strip("/") not in ("", "0"):
            raise _invalid(url, "a Redis Cluster has database 0 only: end the URL with '/'")
        return Target("cluster", hosts, username, password, options=options)
    service, _, db_text = path.strip("/").partition("/")
    if not service:
        raise _invalid(url, "the Sentinel service name is missing (.../<service_name>/<db>)")
    db_text = db_text or "0"
    if not db_text.isascii() or not db_text.isdigit():
        raise _invalid(url, f"the database {db_text!r} is not a number")
    return Target("sentinel", hosts, username, password, unquote(service), int(db_text), options)


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


def _give_back(held: dict[int, tuple[Any, Any]], pid: int) -> None:
    """A lane's thread ended: its connections go back to their pools (never across a fork)."""
    taken = list(held.values())
    held.clear()
    if os.getpid() == pid:
        for pool, conn in taken:
            pool.release(conn)


class Lane:
    """One thread's own connection (taken from the pool at its first command; on a Redis
    Cluster, one per master it spoke to), and what that thread's calls carry: its
    publisher slot (idempotent publishes and enqueues) and a source of tokens and receipts."""

    __slots__ = ("__weakref__", "_count", "_held", "_seed", "pid", "pool", "publisher")

    def __init__(self, pool: Any, consumer: str) -> None:
        #: The pool of :attr:`conn` (one server, or the master behind Sentinel).
        self.pool = pool
        self.pid = os.getpid()
        #: This thread's slot among the publishers of a stream or queue (the pid: a forked
        #: child has its parent's backend, and maybe the same thread ident).
        self.publisher = f"{consumer}:{self.pid}:{threading.get_ident()}"
        self._seed = os.urandom(8).hex()
        self._count = 0
        #: id(pool) -> (pool, connection)
        self._held: dict[int, tuple[Any, Any]] = {}
        weakref.finalize(self, _give_back, self._held, self.pid)

    def conn_of(self, pool: Any) -> Any:
        """This lane's connection of ``pool`` (taken from it the first time)."""
        held = self._held.get(id(pool))
        if held is None:
            held = self._held[id(pool)] = (pool, pool.get_connection())
        return held[1]

    def drop(self, pool: Any) -> None:
        """Forget (and disconnect) the connection of ``pool``: it failed, or its node left."""
        held = self._held.pop(id(pool), None)
        if held is not None:
            held[1].disconnect()
            held[0].release(held[1])

    @property
    def conn(self) -> Any:
        """The connection (connecting it first, the first time)."""
        return self.conn_of(self.pool)

    def token(self) -> str:
        """A string no other call of any thread or process uses: random per lane, counted
        per call (a thread ident is reused by a later thread, a lane never)."""
        self._count += 1
        return f"{self._seed}{self._count:x}"


class RedisConnection:
    """The clients of one backend: ``client`` (sync) and an async client on a loop thread.

    ``url`` is a ``redis://``, ``rediss://`` or ``unix://`` URL (one server, redis-py's
    form), ``redis+cluster://`` (a Redis Cluster: ``RedisCluster``) or
    ``redis+sentinel://`` (the master a group of Sentinels names: ``Sentinel.master_for``).
    ``wait_replicas`` > 0 makes each write that must survive a failover (publish,
    enqueue) wait on its connection for that many replicas (``WAIT``), ``wait_timeout``
    seconds at most, else :class:`ReplicationTimeout`.
    """

    def __init__(
        self, url: str, *, retries: int, wait_replicas: int = 0, wait_timeout: float = 1.0
    ) -> None:
        self.url = url
        self.retries = retries
        self.safe_url = safe_url(url)
        if wait_replicas < 0 or wait_timeout <= 0:
            raise ConfigurationError(
                "REDIS_WAIT_REPLICAS must be >= 0 and REDIS_WAIT_TIMEOUT > 0, not "
                f"{wait_replicas!r} and {wait_timeout!r}"
            )
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self._options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": MAX_BLOCK + 10,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            "retry_on_error": list(CONNECTION_ERRORS),
            # One connection per followed stream (a blocking read each), as many streams as
            # users: no cap (redis-py 8 caps a pool at 100, which ended every route then).
            "max_connections": 2**31,
        }
        self.target: Target | None = None
        #: ``"server"``, ``"cluster"`` or ``"sentinel"``
        self.kind = "server"
        if url.startswith(("redis+cluster://", "redis+sentinel://")):
            self.target = parse_url(url)
            self.kind = self.target.kind
        else:
            try:
                urlsplit(url).port  # noqa: B018 - raises ValueError for a port out of range
                # redis-py's reply types are loose unions; replies are checked where used.
                self._client: Any = redis.Redis.from_url(url, **self._options)
            except ValueError as exc:
                why = str(exc).replace(urlsplit(url).password or "\0", "***")
                raise _invalid(url, why) from None
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
        self._sentinel: Any = None
        self._asentinel: Any = None
        self._lock = threading.Lock()

    # -- the clients: one server, a cluster (made at first use: it connects), Sentinel ------

    @property
    def client(self) -> Any:
        """The redis-py client (sync): ``Redis``, or ``RedisCluster`` made at its first use."""
        try:
            return self._client
        except AttributeError:
            pass
        with self._lock:
            if not hasattr(self, "_client"):
                self._client = self._make_client()
        return self._client

    def _node_options(self) -> dict[str, Any]:
        target = self.target
        assert target is not None
        options = dict(self._options)
        if target.username:
            options["username"] = target.username
        if target.password is not None:
            options["password"] = target.password
        return options

    def _make_client(self) -> Any:
        target = self.target
        assert target is not None
        options = self._node_options()
        if target.kind == "cluster":
            nodes = [
                redis.cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in target.hosts
            ]
            try:
                return redis.cluster.RedisCluster(startup_nodes=nodes, **options)
            except (redis.RedisError, RedisClusterException) as exc:
                self._refused(exc)
                raise BackendUnavailable(
                    f"Redis Cluster at {self.safe_url} is unavailable: {exc}"
                ) from exc
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts), sentinel_kwargs=self._sentinel_options(), **options
        )
        self._sentinel = sentinel
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            target.service, db=target.db, **options
        )

    def _sentinel_options(self) -> dict[str, Any]:
        target = self.target
        assert target is not None
        given = dict(target.options)
        options: dict[str, Any] = {
            "socket_connect_timeout": 1.0,
            "socket_timeout": 2.0,
        }
        if given.get("sentinel_username"):
            options["username"] = given["sentinel_username"]
        if given.get("sentinel_password"):
            options["password"] = given["sentinel_password"]
        return options

    def _make_aclient(self) -> Any:
        if self.target is None:
            return redis.asyncio.Redis.from_url(self.url, **self._options)
        options = self._node_options()
        if self.target.kind == "cluster":
            options.pop("retry_on_error", None)
            nodes = [
                redis.asyncio.cluster.ClusterNode(host, port) for host, port in self.target.hosts
            ]
            return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **options)
        sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(self.target.hosts), sentinel_kwargs=self._sentinel_options(), **options
        )
        self._asentinel = sentinel
        return sentinel.master_for(self.target.service, db=self.target.db, **options)

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
            if self.kind == "sentinel":  # a pool given to the client is not closed with it
                client.connection_pool.disconnect()
                for watcher in self._sentinel.sentinels:
                    watcher.close()
        loop, self._loop = self._loop, None
        if loop is not None:
            if self.aclient is not None:
                asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(10)
            loop.close()

    async def _aclose(self) -> None:
        await self.aclient.aclose()
        if self.kind == "sentinel":
            await self.aclient.connection_pool.disconnect()
            for watcher in self._asentinel.sentinels:
                await watcher.aclose()

    def _refused(self, exc: BaseException) -> None:
        """A server that refuses the URL's credentials: a configuration error, at once
        (trying again cannot help), masked."""
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, redis.AuthenticationError) or "WRONGPASS" in str(seen):
                raise ConfigurationError(
                    f"REDIS_URL {self.safe_url!r}: the Redis server refused the credentials "
                    f"({seen}); check the user and password"
                ) from None
            seen = seen.__cause__ or seen.__context__

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        """Turn redis-py's errors into notifycore's, naming the server (never its password)."""
        try:
            yield
        except redis.AuthenticationError as exc:
            self._refused(exc)
        except redis.exceptions.AuthenticationWrongNumberOfArgsError as exc:
            raise ConfigurationError(
                f"REDIS_URL {self.safe_url!r}: the Redis server refused the credentials ({exc})"
            ) from None
        except (*CONNECTION_ERRORS, *CLUSTER_ERRORS) as exc:
            self._refused(exc)
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
            pool = None if self.kind == "cluster" else self.client.connection_pool
            lane = self._local.lane = Lane(pool, self.consumer)
        return lane

    def _pool(self, key: str | None, asking: tuple[str, int] | None) -> Any:
        """The pool a command on ``key`` goes to: the one server's, or (on a cluster) that of
        the master serving ``key``'s slot, or of the node an ``ASK`` named."""
        client = self.client
        if self.kind != "cluster":
            return client.connection_pool
        if asking is not None:
            node = client.get_node(host=asking[0], port=asking[1])
            if node is None:
                raise RedisClusterException(f"{asking[0]}:{asking[1]} is not known yet")
        else:
            if key is None:
                raise ValueError("a command on a Redis Cluster needs the key it acts on")
            node = client.get_node_from_key(key)
        return client.get_redis_connection(node).connection_pool

    def _refresh(self) -> None:
        """Ask the cluster again who serves which slot (after MOVED, or a node lost)."""
        with suppress(
            redis.RedisError, RedisClusterException
        ):  # none answers: the next try says so
            self.client.nodes_manager.initialize()

    def execute(self, *commands: tuple[Any, ...], key: str | None = None) -> list[Any]:
        """Send ``commands`` in one write and read their replies, on this thread's lane.

        On a Redis Cluster, ``key`` (a key of the commands; they all share its hash slot)
        chooses the master; ``MOVED`` refreshes the slot map and ``ASK`` sends them again
        to the node it names, after ``ASKING``. A connection error closes the connection
        and the whole call is sent again, with back-off, ``retries`` times at most (as the
        client's retry policy does), and so are a cluster's ``CLUSTERDOWN`` and
        ``TRYAGAIN``; a reply that is an error raises it once every reply is read, so the
        connection stays in step.
        """
        plain = b"".join(pack(command) for command in commands)
        failures = 0
        asking: tuple[str, int] | None = None
        lane = self.lane()
        while True:
            conn = pool = None
            try:
                # Finding the pool, and a first connect, may fail too: tried again here.
                pool = self._pool(key, asking)
                conn = lane.conn_of(pool)
                if asking is None:
                    conn.send_packed_command([plain], check_health=False)
                else:
                    asked = b"".join(pack(("ASKING",)) + pack(c) for c in commands)
                    conn.send_packed_command([asked], check_health=False)
                replies = []
                failed: redis.ResponseError | None = None
                for _ in commands:
                    try:
                        if asking is not None:
                            conn.read_response()
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
                        failed = failed or exc
            except redis.AuthenticationError:
                if pool is not None:
                    lane.drop(pool)
                raise
            except (*CONNECTION_ERRORS, MovedError, RedisClusterException) as exc:
                if pool is not None:
                    lane.drop(pool)
                failures += 1
                if failures > self.retries:
                    raise
                if self.kind == "cluster":
                    asking = None
                    if not isinstance(exc, MovedError):
                        time.sleep(self._backoff.compute(failures))
                    self._refresh()
                else:
                    time.sleep(self._backoff.compute(failures))
                continue
            except BaseException:
                if pool is not None:
                    lane.drop(pool)  # interrupted half-way: the replies would be out of step
                raise
            if failed is not None and self.kind == "cluster" and isinstance(failed, CLUSTER_ERRORS):
                failures += 1
                if failures > self.retries + 2:
                    raise failed
                if isinstance(failed, MovedError):
                    asking = None
                    self._refresh()
                elif isinstance(failed, AskError):
                    asking = (failed.host, int(failed.port))
                else:  # CLUSTERDOWN, TRYAGAIN: the cluster is busy failing over or resharding
                    asking = None
                    time.sleep(self._backoff.compute(failures))
                    self._refresh()
                continue
            if failed is not None:
                raise failed
            return replies

    def evalsha(self, lua: str, keys: list[str], args: list[Any], *, durable: bool = False) -> Any:
        """Run a script by its SHA1 on this thread's lane, sent whole (``EVAL``, which
        caches it) when the server has not got it (a restart, ``SCRIPT FLUSH``, a new
        master).

        ``durable``: a write that must survive a failover; with ``wait_replicas``, ``WAIT``
        follows it on the same connection, and too few replicas raise
        :class:`ReplicationTimeout`.
        """
        sha = self._shas.get(lua)
        if sha is None:
            sha = self._shas[lua] = hashlib.sha1(lua.encode()).hexdigest()
        call: tuple[Any, ...] = ("EVALSHA", sha, len(keys), *keys, *args)
        commands = [call]
        if durable and self.wait_replicas:
            commands.append(("WAIT", self.wait_replicas, int(self.wait_timeout * 1000)))
        try:
            replies = self.execute(*commands, key=keys[0])
        except redis.exceptions.NoScriptError:
            # EVAL runs it and caches it on whichever node runs it (after an ASK, say).
            commands[0] = ("EVAL", lua, *call[2:])
            replies = self.execute(*commands, key=keys[0])
        if len(replies) > 1:
            self.check_replicas(replies[1])
        return replies[0]

    def check_replicas(self, acked: Any) -> None:
        """``ReplicationTimeout`` unless ``WAIT`` answered ``wait_replicas`` or more."""
        if int(acked) < self.wait_replicas:
            raise ReplicationTimeout(
                f"Redis at {self.safe_url}: {int(acked)} of the {self.wait_replicas} replicas "
                f"(REDIS_WAIT_REPLICAS) confirmed the write within {self.wait_timeout:g} s "
                "(REDIS_WAIT_TIMEOUT); it is on the master but a failover could lose it"
            )

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
                self.aclient = self._make_aclient()
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
