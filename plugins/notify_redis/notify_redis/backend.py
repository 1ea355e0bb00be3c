"""The Redis backend: Redis Streams for history, live delivery and job queues.

Streams: ``XADD`` with an exact ``MAXLEN`` (and ``XTRIM MINID`` for age), the
Redis entry id as the event id browsers resume from, ``XRANGE`` to read
since an id and ``XREAD BLOCK`` to follow. A reader behind the retention is
told through the stream's ``max-deleted-entry-id``.

Queues: one stream per queue read through a consumer group. Reserving is one
Lua script (atomic on the server): move due delayed jobs onto the stream,
take over one job whose lease (its visibility timeout, a sorted set of
deadlines) ran out with ``XCLAIM``, or else read a new one with
``XREADGROUP``; then record the new lease and a receipt. ``ack``, ``retry``,
``release`` and ``dead_letter`` are scripts too, and act only while the
receipt matches.
Delayed jobs (retries with back-off) wait in a sorted set. Dead letters are a
stream of their own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from notify_redis.plugin import DEFAULT_URL
from notifycore.backends.base import (
    Backend,
    DeadLetter,
    Job,
    Outage,
    StreamMessage,
    StreamRead,
    id_number,
)
from notifycore.errors import BackendError, BackendUnavailable, InvalidStreamId

__all__ = ["RedisBackend", "parse_id"]

T = TypeVar("T")
GROUP = "notifycore-workers"
#: Longest single XREAD BLOCK; longer waits loop (kept below the socket timeout).
_MAX_BLOCK = 20.0


# KEYS: stream, its meta hash, its publishers hash
# ARGV: maxlen, min id ('' for none), publisher, token, payloads...
# Trims exactly, and remembers the newest id trimmed so readers behind it get a reset
# (Redis 7.0's max-deleted-entry-id counts XDEL only, not trimming).
# Idempotent: a call whose reply was lost (the server went down after running it) is
# sent again by the client's retry with the same token, and gets the same ids back
# instead of adding the messages twice.
def _once(publishers: str, publisher: str, token: str) -> str:
    """Lua that returns the ids of a call already made with this token (a retry), if any."""
    return f"""
local done = redis.call('HGET', {publishers}, {publisher})
if done then
  local sep = string.find(done, ' ', 1, true)
  if string.sub(done, 1, sep - 1) == {token} then
    local ids = {{}}
    for id in string.gmatch(string.sub(done, sep + 1), '[^,]+') do ids[#ids + 1] = id end
    return ids
  end
end
"""


def _remember(publishers: str, publisher: str, token: str) -> str:
    return f"""
redis.call('HSET', {publishers}, {publisher}, {token} .. ' ' .. table.concat(ids, ','))
redis.call('EXPIRE', {publishers}, 300)
"""


_PUBLISH = (
    _once("KEYS[3]", "ARGV[3]", "ARGV[4]")
    + """
local ids = {}
for i = 5, #ARGV do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'd', ARGV[i]) end
"""
    + _remember("KEYS[3]", "ARGV[3]", "ARGV[4]")
    + """
local trimmed = false
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  trimmed = old[#old][1]
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
end
if ARGV[2] ~= '' then
  local old = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[2], '-', 'COUNT', 1)
  if #old > 0 then
    trimmed = old[1][1]
    redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
  end
end
if trimmed then redis.call('HSET', KEYS[2], 'trimmed', trimmed) end
return ids
"""
)

# KEYS: stream, its meta hash; ARGV: after ('' for the start), count ('' for all)
_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {false, false, {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local maxdel, last = redis.call('HGET', KEYS[2], 'trimmed') or '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local entries
if ARGV[2] == '' then
  entries = redis.call('XRANGE', KEYS[1], start, '+')
else
  entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[2])
end
return {maxdel, last, entries}
"""

# KEYS: queue stream, its publishers hash; ARGV: publisher, token, payloads...
# Idempotent like publishing: a retried call after a lost reply adds no second copy.
_ENQUEUE = (
    _once("KEYS[2]", "ARGV[1]", "ARGV[2]")
    + """
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'p', ARGV[i], 'a', 0) end
"""
    + _remember("KEYS[2]", "ARGV[1]", "ARGV[2]")
    + "return ids\n"
)

# KEYS: stream, leases, jobs, delayed, delayed-data
# ARGV: group, consumer, visibility ms, receipt, how many
# Returns {n, wait ms, newest id, id1, payload1, attempts1, error1, ...}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function field(fields, name)
  for i = 1, #fields, 2 do if fields[i] == name then return fields[i + 1] end end
  return false
end
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, token in ipairs(due) do
  local p = redis.call('HGET', KEYS[5], token .. ':p')
  local a = redis.call('HGET', KEYS[5], token .. ':a') or '0'
  local e = redis.call('HGET', KEYS[5], token .. ':e')
  if p then
    if e then redis.call('XADD', KEYS[1], '*', 'p', p, 'a', a, 'e', e)
    else redis.call('XADD', KEYS[1], '*', 'p', p, 'a', a) end
  end
  redis.call('ZREM', KEYS[4], token)
  redis.call('HDEL', KEYS[5], token .. ':p', token .. ':a', token .. ':e')
end
local out = {}
local want = tonumber(ARGV[5])
local deadline = now + tonumber(ARGV[3])
-- Leases and receipts are written once for the whole batch, below.
local leases, receipts = {}, {}
local function lease(id, p, a, e)
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id
  receipts[#receipts + 1] = 'r:' .. id
  receipts[#receipts + 1] = ARGV[4]
  out[#out + 1] = id
  out[#out + 1] = p
  out[#out + 1] = a
  out[#out + 1] = e
end
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, want)
for _, old in ipairs(expired) do
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, old)
  if #claimed > 0 and claimed[1] then
    local id = claimed[1][1]
    local a = redis.call('HINCRBY', KEYS[3], 'a:' .. id, 1)
    local e = redis.call('HGET', KEYS[3], 'e:' .. id) or field(claimed[1][2], 'e')
    lease(id, field(claimed[1][2], 'p'), a, e)
  else
    redis.call('ZREM', KEYS[2], old)
    redis.call('HDEL', KEYS[3], 'a:' .. old, 'r:' .. old, 'e:' .. old)
  end
end
local room = want - #out / 4
if room > 0 then
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', room, 'STREAMS', KEYS[1], '>')
  if got and #got > 0 then
    for _, entry in ipairs(got[1][2]) do
      local id = entry[1]
      local a = tonumber(field(entry[2], 'a') or '0') + 1
      local e = field(entry[2], 'e')
      receipts[#receipts + 1] = 'a:' .. id
      receipts[#receipts + 1] = a
      if e then
        receipts[#receipts + 1] = 'e:' .. id
        receipts[#receipts + 1] = e
      end
      lease(id, field(entry[2], 'p'), a, e)
    end
  end
end
if #leases > 0 then
  redis.call('ZADD', KEYS[2], unpack(leases))
  redis.call('HSET', KEYS[3], unpack(receipts))
end
local wait = -1
local last = '0-0'
if #out == 0 then
  local nd = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if #nd > 0 then wait = tonumber(nd[2]) - now end
  local nl = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #nl > 0 and (wait < 0 or tonumber(nl[2]) - now < wait) then wait = tonumber(nl[2]) - now end
  local tail = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #tail > 0 then last = tail[1][1] end
end
return {#out / 4, wait, last, unpack(out)}
"""

# Shared head of ack / retry / dead-letter: the caller must still hold the job.
# KEYS: stream, leases, jobs, (delayed, delayed-data | dead)
# ARGV: group, id, receipt, ...
_OWNED = """
local id = ARGV[2]
if redis.call('HGET', KEYS[3], 'r:' .. id) ~= ARGV[3] then return 0 end
local entry = redis.call('XRANGE', KEYS[1], id, id)
local p = false
if #entry > 0 then
  local fields = entry[1][2]
  for i = 1, #fields, 2 do if fields[i] == 'p' then p = fields[i + 1] end end
end
local a = redis.call('HGET', KEYS[3], 'a:' .. id) or '1'
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
redis.call('HDEL', KEYS[3], 'a:' .. id, 'r:' .. id, 'e:' .. id)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ACK = _OWNED + "return 1\n"

# KEYS: stream, leases, jobs; ARGV: group, then id, receipt pairs. Returns how many were acked.
_ACK_MANY = """
local ids, fields = {}, {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[3], 'r:' .. id) == ARGV[i + 1] then
    ids[#ids + 1] = id
    fields[#fields + 1] = 'a:' .. id
    fields[#fields + 1] = 'r:' .. id
    fields[#fields + 1] = 'e:' .. id
  end
end
if #ids > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
  redis.call('ZREM', KEYS[2], unpack(ids))
  redis.call('HDEL', KEYS[3], unpack(fields))
end
return #ids
"""

# ARGV[4]: delay ms, ARGV[5]: error
_RETRY = (
    _OWNED
    + """
if not p then return 1 end
if tonumber(ARGV[4]) <= 0 then
  redis.call('XADD', KEYS[1], '*', 'p', p, 'a', a, 'e', ARGV[5])
else
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), id)
  redis.call('HSET', KEYS[5], id .. ':p', p, id .. ':a', a, id .. ':e', ARGV[5])
end
return 1
"""
)

# KEYS[4]: dead stream; ARGV[4]: error, ARGV[5]: queue, ARGV[6]: the tries to record
_DEAD = (
    _OWNED
    + """
if p then
  redis.call('XADD', KEYS[4], '*', 'p', p, 'a', ARGV[6], 'e', ARGV[4], 't', now, 'q', ARGV[5])
end
return 1
"""
)

# Back on the stream at once with the attempt this reservation counted taken back, and
# the last error kept (read before the shared head forgets it).
_RELEASE = (
    "local e = redis.call('HGET', KEYS[3], 'e:' .. ARGV[2])\n"
    + _OWNED
    + """
if not p then return 1 end
local left = math.max(tonumber(a) - 1, 0)
if e then redis.call('XADD', KEYS[1], '*', 'p', p, 'a', left, 'e', e)
else redis.call('XADD', KEYS[1], '*', 'p', p, 'a', left) end
return 1
"""
)


def parse_id(value: str) -> tuple[int, int]:
    """A Redis stream id (``"1700000000000-3"`` or ``"1700000000000"``) as a tuple."""
    ms, dash, seq = value.partition("-") if isinstance(value, str) else ("", "", "")
    first, second = id_number(ms), id_number(seq) if dash else 0
    if first is None or second is None:
        raise InvalidStreamId(f"not a Redis stream id: {value!r}")
    return first, second


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, bytes]:
    if isinstance(raw, dict):
        return {_text(k): v for k, v in raw.items()}
    return {_text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}


def _safe(url: str) -> str:
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


class RedisBackend(Backend):
    """Streams and queues in Redis, shared by every process and machine that uses it."""

    name = "redis"
    shared = True
    connection_errors = (redis.ConnectionError, redis.TimeoutError)
    release_keeps_tries = True

    def __init__(
        self,
        url: str | None = None,
        *,
        stream_maxlen: int = 10_000,
        stream_max_age: float = 0.0,
        prefix: str = "notifycore:",
        retries: int = 3,
    ) -> None:
        super().__init__(
            url or DEFAULT_URL, stream_maxlen=stream_maxlen, stream_max_age=stream_max_age
        )
        assert self.url is not None
        self._url: str = self.url
        self.prefix = prefix
        self.retries = retries
        self.safe_url = _safe(self.url)
        self._options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": _MAX_BLOCK + 10,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        }
        try:
            # redis-py's reply types are loose unions; replies are checked where they are used.
            self.client: Any = redis.Redis.from_url(self.url, **self._options)
        except ValueError as exc:
            raise BackendError(f"invalid REDIS_URL {self.safe_url!r}: {exc}") from exc
        self._read = self.client.register_script(_READ)
        self._publish = self.client.register_script(_PUBLISH)
        self._enqueue = self.client.register_script(_ENQUEUE)
        self._reserve = self.client.register_script(_RESERVE)
        self._ack = self.client.register_script(_ACK)
        self._ack_many = self.client.register_script(_ACK_MANY)
        self._retry = self.client.register_script(_RETRY)
        self._dead = self.client.register_script(_DEAD)
        self._release = self.client.register_script(_RELEASE)
        self._groups: set[str] = set()
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._aclient: Any = None
        self._apublish: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        return cls(
            cls._url_setting(
                settings, "REDIS_URL", DEFAULT_URL, ("redis://", "rediss://", "unix://")
            ),
            **cls._stream_settings(settings),
            prefix=settings.get("REDIS_PREFIX", "notifycore:"),
            retries=settings.get("REDIS_RETRIES", 3),
        )

    def __repr__(self) -> str:
        return f"<RedisBackend {self.safe_url}>"

    def close(self) -> None:
        self.client.close()
        loop, self._loop = self._loop, None
        if loop is not None:
            if self._aclient is not None:
                asyncio.run_coroutine_threadsafe(self._aclient.aclose(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(10)
            loop.close()

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Turn redis-py's errors into notifycore's, naming the server (never its password)."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailable(
                f"Redis at {self.safe_url} is unavailable ({what}, after {self.retries} retries): {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise BackendError(f"Redis at {self.safe_url} refused {what}: {exc}") from exc

    # -- keys --------------------------------------------------------------------------------

    def _skey(self, stream: str) -> str:
        return f"{self.prefix}s:{stream}"

    def _skeys(self, stream: str) -> list[str]:
        return [
            f"{self.prefix}s:{stream}",
            f"{self.prefix}sm:{stream}",
            f"{self.prefix}sp:{stream}",
        ]

    def _qkeys(self, queue: str) -> list[str]:
        base = f"{self.prefix}q:{queue}"
        return [base, f"{base}:leases", f"{base}:jobs", f"{base}:delayed", f"{base}:delayed-data"]

    def _dead_key(self, queue: str) -> str:
        return f"{self.prefix}q:{queue}:dead"

    # -- streams -----------------------------------------------------------------------------

    def _publish_args(self, items: Iterable[bytes]) -> list[Any]:
        payloads = list(items)
        for data in payloads:
            if not isinstance(data, bytes):
                raise TypeError(f"stream messages are bytes, not {type(data).__name__}")
        minid = ""
        if self.stream_max_age > 0:
            minid = f"{int((time.time() - self.stream_max_age) * 1000)}-0"
        # One publisher slot per thread; the token makes a retried call recognisable.
        publisher = f"{self.consumer}:{threading.get_ident()}"
        return [self.stream_maxlen, minid, publisher, uuid.uuid4().hex, *payloads]

    def publish(self, stream: str, data: bytes) -> str:
        return self.publish_many(stream, (data,))[0]

    def publish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        args = self._publish_args(items)
        if len(args) == 4:
            return []
        with self._calling("publish"):
            ids = self._publish(keys=self._skeys(stream), args=args)
        return [_text(i) for i in ids]

    @staticmethod
    def _batch(result: Any, after: str | None) -> StreamRead:
        maxdel, last, entries = result
        messages = [StreamMessage(_text(i), _fields(f)["d"]) for i, f in entries]
        reset = False
        if after is not None and maxdel:
            position = parse_id(after)
            reset = position < parse_id(_text(maxdel)) or position > parse_id(_text(last))
        elif after is not None and not maxdel and parse_id(after) > (0, 0):
            reset = True  # the stream is gone (flushed, or a Redis without persistence restarted)
        return StreamRead(messages, reset=reset)

    def read(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        if after is not None:
            parse_id(after)
        args = ["" if after is None else after, "" if limit is None else str(limit)]
        with self._calling("read"):
            batch = self._batch(self._read(keys=self._skeys(stream)[:2], args=args), after)
            if batch.messages or batch.reset or not block:
                return batch
            return self._tail(stream, after or "0-0", block, limit)

    def _tail(self, stream: str, after: str, block: float, limit: int | None = None) -> StreamRead:
        """Wait for messages after ``after``: ``XREAD BLOCK``, then the trim mark, in one round trip.

        Reading the trim mark after the messages tells whether any between ``after`` and
        them were trimmed first, so a follower needs no separate check per message.
        """
        key, meta = self._skeys(stream)[:2]
        deadline = time.monotonic() + block
        with self._calling("read"):
            while (remaining := deadline - time.monotonic()) > 0:
                pipe = self.client.pipeline(transaction=False)
                pipe.xread(
                    {key: after}, count=limit, block=max(1, int(min(remaining, _MAX_BLOCK) * 1000))
                )
                pipe.hget(meta, "trimmed")
                got, trimmed = pipe.execute()
                if got:
                    entries = got[0][1]
                    reset = trimmed is not None and parse_id(after) < parse_id(_text(trimmed))
                    return StreamRead([StreamMessage(_text(i), f[b"d"]) for i, f in entries], reset)
        return StreamRead([])

    def last_id(self, stream: str) -> str | None:
        with self._calling("last_id"):
            _, last, _ = self._read(keys=self._skeys(stream)[:2], args=["", "0"])
        return None if not last or _text(last) == "0-0" else _text(last)

    def follow(
        self,
        stream: str,
        after: str | None = None,
        *,
        stop: threading.Event | None = None,
        poll: float = 1.0,
    ) -> Iterator[StreamRead]:
        """Like :meth:`Backend.follow`, and through outages: reconnect with back-off, resume."""
        cursor = after
        outage = Outage(self)
        while cursor is None:
            try:
                cursor = self.last_id(stream) or "0-0"
            except BackendUnavailable as exc:
                if outage.wait(exc, stop):
                    return
        checked = False  # the first read (and the first after an outage) checks for a reset
        while stop is None or not stop.is_set():
            try:
                if checked:
                    batch = self._tail(stream, cursor, poll)
                else:
                    batch = self.read(stream, cursor, block=poll)
                    checked = True
            except BackendUnavailable as exc:
                checked = False
                if outage.wait(exc, stop):
                    return
                continue
            outage.recovered()
            if batch.messages or batch.reset:
                cursor = self._advance(stream, cursor, batch) or "0-0"
                yield batch

    # -- async faces: a redis.asyncio client on one loop thread of this backend -------------

    def _submit(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._loop_thread = threading.Thread(
                    target=self._loop.run_forever, name="notify-redis-async", daemon=True
                )
                self._loop_thread.start()
                self._aclient = redis.asyncio.Redis.from_url(self._url, **self._options)
                self._apublish = self._aclient.register_script(_PUBLISH)
            loop = self._loop
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def apublish(self, stream: str, data: bytes) -> str:
        return (await self.apublish_many(stream, (data,)))[0]

    async def apublish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        args = self._publish_args(items)
        keys = self._skeys(stream)
        if len(args) == 4:
            return []

        async def run() -> list[Any]:
            return list(await self._apublish(keys=keys, args=args))

        with self._calling("publish"):
            ids = await self._submit(run())
        return [_text(i) for i in ids]

    async def aread(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        batch = await asyncio.to_thread(self.read, stream, after, limit=limit)
        if batch.messages or batch.reset or not block:
            return batch
        key, meta = self._skeys(stream)[:2]
        position = after or "0-0"
        deadline = time.monotonic() + block

        async def wait(ms: int) -> Any:
            # As in _tail: the trim mark read after the messages tells whether any were lost.
            pipe = self._aclient.pipeline(transaction=False)
            pipe.xread({key: position}, count=limit, block=ms)
            pipe.hget(meta, "trimmed")
            return await pipe.execute()

        with self._calling("read"):
            while (remaining := deadline - time.monotonic()) > 0:
                got, trimmed = await self._submit(
                    wait(max(1, int(min(remaining, _MAX_BLOCK) * 1000)))
                )
                if got:
                    entries = got[0][1]
                    reset = trimmed is not None and parse_id(position) < parse_id(_text(trimmed))
                    return StreamRead([StreamMessage(_text(i), f[b"d"]) for i, f in entries], reset)
        return StreamRead([])

    async def afollow(
        self, stream: str, after: str | None = None, *, poll: float = 1.0
    ) -> AsyncIterator[StreamRead]:
        cursor = after if after is not None else (await self.alast_id(stream) or "0-0")
        outage = Outage(self)
        while True:
            try:
                batch = await self.aread(stream, cursor, block=poll)
            except BackendUnavailable as exc:
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.recovered()
            if batch.messages or batch.reset:
                if batch.messages:
                    cursor = batch.messages[-1].id
                elif batch.reset:
                    cursor = await self.alast_id(stream) or "0-0"
                yield batch

    # -- queues ------------------------------------------------------------------------------

    def _ensure_group(self, queue: str, key: str, *, force: bool = False) -> None:
        if key in self._groups and not force:
            return
        try:
            self.client.xgroup_create(key, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(key)

    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        if delay > 0:
            if not isinstance(payload, bytes):
                raise TypeError(f"job payloads are bytes, not {type(payload).__name__}")
            keys = self._qkeys(queue)
            token = f"d{uuid.uuid4().hex}"
            with self._calling("enqueue"):
                now_ms = int(time.time() * 1000)
                pipe = self.client.pipeline(transaction=True)
                pipe.hset(keys[4], mapping={f"{token}:p": payload, f"{token}:a": 0})
                pipe.zadd(keys[3], {token: now_ms + int(delay * 1000)})
                pipe.execute()
            return token
        return self.enqueue_many(queue, (payload,))[0]

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        key = self._qkeys(queue)[0]
        items = list(payloads)
        for payload in items:
            if not isinstance(payload, bytes):
                raise TypeError(f"job payloads are bytes, not {type(payload).__name__}")
        if not items:
            return []
        args: list[Any] = [f"{self.consumer}:{threading.get_ident()}", uuid.uuid4().hex, *items]
        with self._calling("enqueue"):
            return [_text(i) for i in self._enqueue(keys=[key, f"{key}:publishers"], args=args)]

    def _take(
        self, queue: str, visibility_timeout: float, count: int = 1
    ) -> tuple[list[Job], float, str]:
        keys = self._qkeys(queue)
        receipt = uuid.uuid4().hex
        args: list[str | int] = [
            GROUP,
            self.consumer,
            int(visibility_timeout * 1000),
            receipt,
            count,
        ]
        try:
            result = self._reserve(keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group(queue, keys[0], force=True)  # Redis lost it (restart, flush)
            result = self._reserve(keys=keys, args=args)
        jobs = []
        for i in range(3, 3 + 4 * int(result[0]), 4):
            job_id, payload, attempts, error = result[i : i + 4]
            jobs.append(
                Job(
                    _text(job_id),
                    queue,
                    bytes(payload),
                    int(attempts),
                    receipt,
                    _text(error) if error else None,
                )
            )
        return jobs, float(result[1]), _text(result[2])

    def reserve_many(self, queue: str, count: int, *, visibility_timeout: float) -> list[Job]:
        jobs: list[Job] = []
        with self._calling("reserve"):
            self._ensure_group(queue, self._qkeys(queue)[0])
            while len(jobs) < count:
                # At most 500 a script call: Lua's unpack() has a limit on arguments.
                got = self._take(queue, visibility_timeout, min(count - len(jobs), 500))[0]
                if not got:
                    break
                jobs.extend(got)
        return jobs

    def ack_many(self, jobs: Iterable[Job]) -> int:
        by_queue: dict[str, list[Job]] = {}
        for job in jobs:
            by_queue.setdefault(job.queue, []).append(job)
        done = 0
        with self._calling("ack"):
            for queue, group in by_queue.items():
                # At most 500 a script call: a script that fails half-way is not rolled back.
                for start in range(0, len(group), 500):
                    chunk = group[start : start + 500]
                    pairs = [part for job in chunk for part in (job.id, job.receipt)]
                    done += int(self._ack_many(keys=self._qkeys(queue)[:3], args=[GROUP, *pairs]))
        return done

    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        key = self._qkeys(queue)[0]
        deadline = time.monotonic() + (block or 0)
        with self._calling("reserve"):
            self._ensure_group(queue, key)
            while True:
                jobs, wait_ms, last = self._take(queue, visibility_timeout)
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0:
                    return jobs[0] if jobs else None
                wait = min(remaining, _MAX_BLOCK)
                if wait_ms >= 0:
                    wait = min(wait, wait_ms / 1000 + 0.001)
                # Wake on the next XADD after the newest entry the script saw.
                self.client.xread({key: last}, count=1, block=max(1, int(wait * 1000)))

    def _finish(self, script: Any, job: Job, keys: list[str], *args: Any) -> bool:
        with self._calling("finish a job"):
            return bool(script(keys=keys, args=[GROUP, job.id, job.receipt, *args]))

    def ack(self, job: Job) -> bool:
        return self._finish(self._ack, job, self._qkeys(job.queue)[:3])

    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        return self._finish(
            self._retry, job, self._qkeys(job.queue), int(max(delay, 0.0) * 1000), error
        )

    def release(self, job: Job) -> bool:
        return self._finish(self._release, job, self._qkeys(job.queue)[:3])

    def dead_letter(self, job: Job, *, error: str) -> bool:
        keys = [*self._qkeys(job.queue)[:3], self._dead_key(job.queue)]
        return self._finish(self._dead, job, keys, error, job.queue, job.attempts)

    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        with self._calling("dead_letters"):
            entries = self.client.xrange(self._dead_key(queue), count=limit)
        letters = []
        for entry_id, raw in entries:
            f = _fields(raw)
            letters.append(
                DeadLetter(
                    _text(entry_id),
                    queue,
                    bytes(f["p"]),
                    int(f["a"]),
                    _text(f["e"]),
                    int(f["t"]) / 1000,
                )
            )
        return letters

    def _chosen(self, queue: str, ids: Iterable[str] | None) -> list[tuple[str, dict[str, bytes]]]:
        wanted = None if ids is None else set(ids)
        entries = self.client.xrange(self._dead_key(queue))
        return [(_text(i), _fields(f)) for i, f in entries if wanted is None or _text(i) in wanted]

    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        with self._calling("requeue dead letters"):
            chosen = self._chosen(queue, ids)
            pipe = self.client.pipeline(transaction=True)
            for entry_id, f in chosen:
                pipe.xadd(self._qkeys(queue)[0], {"p": f["p"], "a": 0})
                pipe.xdel(self._dead_key(queue), entry_id)
            pipe.execute()
        return len(chosen)

    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        with self._calling("purge dead letters"):
            chosen = [i for i, _ in self._chosen(queue, ids)]
            if chosen:
                self.client.xdel(self._dead_key(queue), *chosen)
        return len(chosen)

    def queue_length(self, queue: str) -> int:
        keys = self._qkeys(queue)
        with self._calling("queue_length"):
            pipe = self.client.pipeline(transaction=False)
            pipe.xlen(keys[0])
            pipe.zcard(keys[3])
            waiting, delayed = pipe.execute()
        return int(waiting) + int(delayed)

    # -- de-duplication ----------------------------------------------------------------------

    def mark_done(self, key: str, *, ttl: float) -> bool:
        with self._calling("mark_done"):
            return bool(
                self.client.set(f"{self.prefix}done:{key}", 1, nx=True, px=max(1, int(ttl * 1000)))
            )

    def is_done(self, key: str) -> bool:
        with self._calling("is_done"):
            return bool(self.client.exists(f"{self.prefix}done:{key}"))
