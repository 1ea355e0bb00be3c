"""Streams on Redis: one Redis Stream per notifycore stream.

``publish`` is one script (add, trim exactly, remember the newest id trimmed,
idempotent under retries); ``read`` is one script (the range after an id and
the marks that tell a reader it was left behind); a follower's next read is
``XREAD BLOCK`` pipelined with a read of the trim mark. The sync and async
faces share how commands are built and replies read; only the I/O differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator, Iterable
from typing import Any

from notify_redis import scripts
from notify_redis.connection import MAX_BLOCK, RedisConnection, adrive, drive
from notify_redis.keys import KeySpace, StreamKeys
from notifycore.backends.base import StreamMessage, StreamRead, id_number
from notifycore.errors import InvalidStreamId

__all__ = ["RedisStreams", "parse_id"]


def parse_id(value: str) -> tuple[int, int]:
    """A Redis stream id (``"1700000000000-3"`` or ``"1700000000000"``) as a tuple."""
    ms, dash, seq = value.partition("-") if isinstance(value, str) else ("", "", "")
    first, second = id_number(ms), id_number(seq) if dash else 0
    if first is None or second is None:
        raise InvalidStreamId(f"not a Redis stream id: {value!r}")
    return first, second


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def fields(raw: Any) -> dict[str, bytes]:
    """A stream entry's fields, from redis-py's dict or a script's flat list."""
    if isinstance(raw, dict):
        return {text(k): v for k, v in raw.items()}
    return {text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}


def message(entry: Any) -> StreamMessage:
    """A stream entry (its id, and its fields as a flat list or redis-py's dict) as a
    message; the flat ``[b"d", data]`` a stream entry is, read without a dict."""
    entry_id, raw = entry
    if isinstance(raw, list) and len(raw) == 2 and raw[0] == b"d":
        return StreamMessage(text(entry_id), raw[1])
    return StreamMessage(text(entry_id), fields(raw)["d"])


def entries(reply: Any) -> list[Any]:
    """The entries of an ``XREAD`` of one stream: a map (RESP3), a list of ``[key,
    entries]`` (RESP2, and redis-py's parsed form), or nothing."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(next(iter(reply.values())))
    return list(reply[0][1])


class RedisStreams:
    """The stream operations of :class:`~notify_redis.backend.RedisBackend`."""

    connection: RedisConnection
    keys: KeySpace
    consumer: str
    stream_maxlen: int
    stream_max_age: float

    # -- publishing --------------------------------------------------------------------------

    def _publish_call(self, stream: str, items: Iterable[bytes]) -> tuple[list[str], list[Any]]:
        payloads = list(items)
        for data in payloads:
            if not isinstance(data, bytes):
                raise TypeError(f"stream messages are bytes, not {type(data).__name__}")
        minid = ""
        if self.stream_max_age > 0:
            minid = f"{int((time.time() - self.stream_max_age) * 1000)}-0"
        # One publisher slot per thread; the token makes a retried call recognisable.
        lane = self.connection.lane()
        keys = self.keys.stream(stream)
        return (
            [keys.stream, keys.meta, keys.publishers],
            [self.stream_maxlen, minid, lane.publisher, lane.token(), *payloads],
        )

    def publish(self, stream: str, data: bytes) -> str:
        return self.publish_many(stream, (data,))[0]

    def publish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        keys, args = self._publish_call(stream, items)
        if len(args) == 4:
            return []
        with self.connection.calling("publish"):
            ids = self.connection.evalsha(scripts.PUBLISH, keys, args, durable=True)
        return [text(i) for i in ids]

    async def apublish(self, stream: str, data: bytes) -> str:
        return (await self.apublish_many(stream, (data,)))[0]

    async def apublish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        connection = self.connection
        if connection.wait_replicas or connection.kind == "cluster":
            # WAIT must follow the write on its connection, and a cluster's master is
            # chosen by the key: both on this thread's lane, in a thread.
            return await asyncio.to_thread(self.publish_many, stream, list(items))
        keys, args = self._publish_call(stream, items)
        if len(args) == 4:
            return []

        async def run() -> list[Any]:
            return list(await connection.ascript(scripts.PUBLISH)(keys=keys, args=args))

        with connection.calling("publish"):
            ids = await connection.submit(run())
        return [text(i) for i in ids]

    # -- reading -----------------------------------------------------------------------------

    def _range(self, keys: StreamKeys, after: str | None, limit: int | None) -> StreamRead:
        """The messages after ``after``; from the oldest kept, with a reset, when ``after`` is
        older than the retention or an id the stream never gave."""
        evalsha = self.connection.evalsha
        bounds = [keys.stream, keys.meta]
        count = "" if limit is None else str(limit)
        maxdel, last, found = evalsha(scripts.READ, bounds, ["" if after is None else after, count])
        reset = False
        if after is not None and maxdel:
            position = parse_id(after)
            if position > parse_id(text(last)):
                # An id this stream never gave (another server's, one flushed since): start
                # again from the oldest message kept, and say so.
                _, _, found = evalsha(scripts.READ, bounds, ["", count])
                reset = True
            else:
                reset = position < parse_id(text(maxdel))
        elif after is not None and not maxdel and parse_id(after) > (0, 0):
            reset = True  # the stream is gone (flushed, or a Redis without persistence restarted)
        return StreamRead([message(entry) for entry in found], reset)

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
        keys = self.keys.stream(stream)
        with self.connection.calling("read"):
            batch = self._range(keys, after, limit)
            if batch.messages or batch.reset or not block:
                return batch
            return self._tail(keys, after or "0-0", block, limit)

    def last_id(self, stream: str) -> str | None:
        keys = self.keys.stream(stream)
        with self.connection.calling("last_id"):
            _, last, _ = self.connection.evalsha(scripts.READ, [keys.stream, keys.meta], ["", "0"])
        return None if not last or text(last) == "0-0" else text(last)

    # -- waiting: XREAD BLOCK, then the trim mark, in one round trip -------------------------

    @staticmethod
    def _tail_plan(keys: StreamKeys, after: str, block: float) -> Generator[int, Any, StreamRead]:
        """Wait (yielding how many ms the next ``XREAD BLOCK`` may wait) for messages after
        ``after``. Reading the trim mark after the messages tells whether any between
        ``after`` and them were trimmed first, so a follower needs no check per message."""
        deadline = time.monotonic() + block
        while (remaining := deadline - time.monotonic()) > 0:
            got, trimmed = yield max(1, int(min(remaining, MAX_BLOCK) * 1000))
            found = entries(got)
            if found:
                reset = trimmed is not None and parse_id(after) < parse_id(text(trimmed))
                return StreamRead([message(entry) for entry in found], reset)
        return StreamRead([])

    @staticmethod
    def _tail_commands(
        pipe: Any, keys: StreamKeys, after: str, limit: int | None, wait_ms: int
    ) -> Any:
        pipe.xread({keys.stream: after}, count=limit, block=wait_ms)
        pipe.hget(keys.meta, "trimmed")
        return pipe.execute()

    def _tail(self, keys: StreamKeys, after: str, block: float, limit: int | None) -> StreamRead:
        execute = self.connection.execute
        count = () if limit is None else ("COUNT", limit)
        trimmed = ("HGET", keys.meta, "trimmed")

        def io(wait_ms: int) -> Any:
            # On this thread's lane, as the pipeline of _tail_commands is on the async client.
            return execute(
                ("XREAD", *count, "BLOCK", wait_ms, "STREAMS", keys.stream, after),
                trimmed,
                key=keys.stream,
            )

        return drive(self._tail_plan(keys, after, block), io)

    def read_next(self, stream: str, after: str, *, block: float) -> StreamRead:
        parse_id(after)
        with self.connection.calling("read"):
            return self._tail(self.keys.stream(stream), after, block, None)

    async def _atail(
        self, keys: StreamKeys, after: str, block: float, limit: int | None
    ) -> StreamRead:
        connection = self.connection

        async def io(wait_ms: int) -> Any:
            async def run() -> Any:
                pipe = connection.aclient.pipeline(transaction=False)
                return await self._tail_commands(pipe, keys, after, limit, wait_ms)

            return await connection.submit(run())

        with connection.calling("read"):
            return await adrive(self._tail_plan(keys, after, block), io)

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
        return await self._atail(self.keys.stream(stream), after or "0-0", block, limit)

    async def aread_next(self, stream: str, after: str, *, block: float) -> StreamRead:
        parse_id(after)
        return await self._atail(self.keys.stream(stream), after, block, None)
