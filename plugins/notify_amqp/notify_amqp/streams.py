"""Streams on RabbitMQ: one stream queue per notifycore stream.

A message's id is its **stream offset plus one** (so ``"0"`` is before the
first), and a browser's ``Last-Event-ID`` is where a consumer re-attaches
(``x-stream-offset``). AMQP 0-9-1 does not tell a publisher the offset it got,
so each connection keeps a *tail* consumer on a stream it publishes to and waits
for its own messages (known by a token in ``message_id``) to come back: that is
the id, and the proof the message is stored. ``append`` (what ``PushConsumer``
uses: it has no use for the id) waits for a publisher confirm instead, which
comes sooner. A read attaches at the reader's id
itself and checks that message is still there: when retention dropped it, the
read reports a reset. Offsets are not consecutive (RabbitMQ spends some on its
own records), so a gap alone proves nothing. AMQP 0-9-1 does not say where a
stream ends either: a read stops after ``read_quiet`` seconds without a delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import amqp
import amqp.exceptions

from notify_amqp.connection import (
    PUBLISH_TIMEOUT,
    Blocked,
    Link,
    Tail,
    body,
    closed_by_broker,
    logger,
    read_frame,
    recovering,
    send,
    text,
)
from notify_amqp.names import AmqpNames
from notifycore.backends.base import Backend, Outage, StreamMessage, StreamRead, id_number
from notifycore.errors import BackendUnavailable, InvalidStreamId

__all__ = ["READ_CAP", "STREAM_CREDIT", "AmqpStreams", "message_id", "parse_id", "stream_offset"]

#: Deliveries a stream consumer may hold before acking (streams need manual acks).
STREAM_CREDIT = 500
#: Longest a stream read goes on beyond its wait for a first message.
READ_CAP = 2.0
#: How long a read waits for the reader's own message once the stream is known to hold it
#: (or later ones), and how long it looks for the stream's newest message to learn that: on
#: a busy machine RabbitMQ can take longer than a quiet read's wait to deliver the first.
ANCHOR_WAIT = 5.0
#: How long a publisher waits on its tail without a delivery before it replaces the tail.
TAIL_STALL = 5.0
#: How long a follower's consumer may deliver nothing before the follower checks that the
#: stream did not go on without it (a consumer can hang, as a tail can: see ``_replace_tail``).
FOLLOW_CHECK = 15.0
#: A follower acks its deliveries together (one ack costs RabbitMQ about what a delivery
#: does): once this many wait, once the first of them came ``FOLLOW_ACK_DELAY`` seconds ago,
#: and whenever its stream goes quiet for its ``poll``. RabbitMQ's consumer timeout, which
#: applies to stream deliveries too, is a minute or more.
FOLLOW_ACK_EVERY = STREAM_CREDIT // 2
FOLLOW_ACK_DELAY = 1.0


class _Hung(Exception):
    """A follower's consumer delivered nothing while its stream went on: attach again."""


def parse_id(value: str) -> int:
    """A stream id: the message's stream offset plus one, so ``"0"`` is before the first."""
    number = id_number(value)
    if number is not None:
        return number
    raise InvalidStreamId(f"not a RabbitMQ stream id: {value!r}")


def stream_offset(message: Any) -> int:
    return int(message.properties["application_headers"]["x-stream-offset"])


def message_id(position: int | None) -> str:
    assert position is not None
    return str(position + 1)


class AmqpStreams(AmqpNames):
    """The stream operations of :class:`~notify_amqp.backend.AmqpBackend`."""

    read_quiet: float

    def publish(self, stream: str, data: bytes) -> str:
        return self.publish_many(stream, [data])[0]

    def append(self, stream: str, data: bytes) -> None:
        """A publish that needs no id: stored once RabbitMQ confirms it, no tail waited on.

        The confirm comes once the stream has the message (on a quorum of its
        replicas), sooner than the message comes back through a consumer. A
        retry after a lost connection looks for the message's token first, as
        :meth:`publish_many` does, so it is stored once.
        """
        token = os.urandom(16).hex()
        since = time.time() - 2.0
        sent = False

        def call(link: Link) -> None:
            nonlocal sent
            name = self._stream(link, stream)
            if sent and self._find_tokens(link, name, since, {token}):
                return  # stored before the connection (or the confirm) was lost
            sent = True
            message = amqp.Message(data, message_id=token, delivery_mode=2)
            try:
                link.publish_confirmed([(name, message)])
            except Blocked:
                raise  # told whether it may be stored; a blocked connection is parked already
            except BackendUnavailable:
                # No confirm in time (a memory alarm...): the message may still be stored.
                # The next call starts on a new connection, as after a publish that timed out.
                link.reset()
                raise

        self._run("append", call)

    def publish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        payloads = list(items)
        if not payloads:
            return []
        tokens = [os.urandom(16).hex() for _ in payloads]
        since = time.time() - 2.0
        sent = False

        def call(link: Link) -> list[str]:
            nonlocal sent
            name = self._stream(link, stream)
            tail = self._tail(link, name)
            waiting = tail.waiting
            missing = tokens
            if sent:  # a retry after a lost connection: what arrived must not go twice
                found = self._find_tokens(link, name, since, set(tokens))
                waiting.update(found)
                missing = [t for t in tokens if t not in found]
            link.refuse_if_blocked()
            for token in missing:
                waiting[token] = None
            sent = True  # from the first message on, a retry must look before sending
            returned = link.counts.returned
            channel = link.channel
            for token, data in zip(tokens, payloads, strict=True):
                if token in missing:
                    send(channel, name, amqp.Message(data, message_id=token, delivery_mode=2))
            now = time.monotonic()
            deadline = now + PUBLISH_TIMEOUT
            check, seen = now + TAIL_STALL, tail.seen
            while any(waiting.get(t) is None for t in tokens):
                link.fail_if_blocked()
                if link.counts.returned != returned:
                    raise amqp.exceptions.NotFound(f"stream queue {name!r} is gone")
                now = time.monotonic()
                if now > deadline:
                    # Nothing stored, or nothing seen, even by a new tail: the next call starts
                    # on a new connection (its channel may still send to a stream leader that
                    # is gone).
                    link.reset()
                    raise BackendUnavailable(f"stream {stream!r} did not store a publish in time")
                if now >= check:
                    if tail.seen == seen:  # not a delivery for a while: it may hang
                        tail = self._replace_tail(link, name, since, tokens)
                        waiting = tail.waiting
                    check, seen = time.monotonic() + TAIL_STALL, tail.seen
                link.drain(min(deadline, check) - time.monotonic())
            return [message_id(waiting.pop(t)) for t in tokens]

        return self._run("publish", call)

    def _tail(self, link: Link, name: str) -> Tail:
        tail = link.tails.get(name)
        if tail is None:
            assert link.conn is not None
            channel = link.conn.channel()
            channel.basic_qos(0, STREAM_CREDIT, False)
            tail = Tail(channel)

            def delivered(message: Any) -> None:
                tail.seen += 1
                token = text(message.properties.get("message_id", ""))
                if token in tail.waiting:
                    tail.waiting[token] = stream_offset(message)
                tail.last_tag = message.delivery_info["delivery_tag"]
                tail.unacked += 1
                if tail.unacked >= STREAM_CREDIT // 2:
                    tail.ack()

            channel.basic_consume(name, callback=delivered, arguments={"x-stream-offset": "next"})
            link.tails[name] = tail
        return tail

    def _drop_tail(self, link: Link, name: str) -> None:
        tail = link.tails.pop(name, None)
        if tail is not None and tail.channel.is_open:
            tail.channel.close()

    def _replace_tail(self, link: Link, name: str, since: float, tokens: list[str]) -> Tail:
        """A new tail for ``name`` instead of one that delivered nothing for a while, with
        what it waited for, and a look from ``since`` for those of ``tokens`` stored already.

        A stream consumer can hang for good, on RabbitMQ 3.10 in a cluster that lost the
        node leading the stream: it was attached, on the node we reconnected to, to that
        node's member of the stream just before the member restarted to follow (or become)
        the new leader, and it never hears of new messages again. Publishes go on being
        stored meanwhile; only a new consumer sees them."""
        logger.debug("the tail on %s delivered nothing for %g s: replaced", name, TAIL_STALL)
        old = link.tails.get(name)
        waiting = dict(old.waiting) if old is not None else {}
        self._drop_tail(link, name)
        tail = self._tail(link, name)  # attached first: what comes after the look, it sees
        tail.waiting.update(waiting)
        missing = {t for t in tokens if tail.waiting.get(t) is None}
        found = self._find_tokens(link, name, since, missing, block=1.0)
        tail.waiting.update({t: o for t, o in found.items() if tail.waiting.get(t) is None})
        return tail

    def _find_tokens(
        self,
        link: Link,
        name: str,
        since: float,
        tokens: set[str],
        *,
        block: float = 1.0,
    ) -> dict[str, int | None]:
        """Offsets of the messages with these tokens published since ``since`` (epoch seconds).

        The look reads through to the newest message the stream had when it began, however
        busy the stream (a message it did not reach would be sent again); a look that cannot
        get there within ``PUBLISH_TIMEOUT`` raises :class:`BackendUnavailable`.
        """
        found: dict[str, int | None] = {}
        newest = self._newest_offset(link, name)
        if newest is None:
            return found
        start = datetime.fromtimestamp(since, UTC)
        for message in self._attach(link, name, start, after=None, block=block, until=newest)[0]:
            token = text(message.properties.get("message_id", ""))
            if token in tokens:
                found[token] = stream_offset(message)
        return found

    def _attach(
        self,
        link: Link,
        name: str,
        start: Any,
        *,
        after: int | None,
        limit: int | None = None,
        block: float | None = None,
        span: float | None = None,
        until: int | None = None,
        first_within: float | None = None,
    ) -> tuple[list[Any], bool]:
        """Deliveries of stream ``name`` from ``start`` until it goes quiet (or ``limit``).

        With ``until`` (an offset), the read goes on however busy the stream until it has
        had that offset (or a later one: nothing from ``start`` up to it), unless nothing at
        all comes within ``block``; past ``PUBLISH_TIMEOUT`` it raises BackendUnavailable.

        ``after`` is the reader's position (an id: the offset of its last message plus
        one, 0 for "before the first"). The consumer attaches at that last message
        itself and drops it; when it is not the first delivery, or does not come at
        all, it was lost to retention (or is unknown), and the second value is True.
        Only this read's own deliveries count as activity; a read never lasts longer
        than ``block`` plus a few seconds, and ``span`` cuts it that long after its
        first delivery (a stream that never goes quiet still ends the read).
        ``first_within``: wait that long at least for a first delivery (not for more).
        """
        assert link.conn is not None
        channel = link.conn.channel()
        credit = min(STREAM_CREDIT, (limit + 1) if limit else STREAM_CREDIT)
        expected = None if after is None else max(after - 1, 0)
        got: list[Any] = []
        state: dict[str, Any] = {"reset": False, "first": None, "last": None, "top": -1}

        def delivered(message: Any) -> None:
            offset = stream_offset(message)
            channel.basic_ack(message.delivery_info["delivery_tag"])
            now = time.monotonic()
            state["last"] = now
            state["top"] = offset  # a consumer gets a stream in order
            if state["first"] is None:
                state["first"] = now
                if expected is not None and offset != expected:
                    state["reset"] = True
                elif after:  # the reader's own last message: seen, not returned
                    return
            if after is not None and offset < after:
                return
            got.append(message)

        quiet = self.read_quiet
        begin = time.monotonic()
        wait_first = max(block or quiet * 4, first_within or 0.0)
        hard = begin + wait_first + READ_CAP
        try:
            channel.basic_qos(0, credit, False)
            channel.basic_consume(name, callback=delivered, arguments={"x-stream-offset": start})
            if until is not None:
                self._read_through(link, name, state, until, begin + wait_first)
            while until is None and (limit is None or len(got) < limit):
                now = time.monotonic()
                if now >= hard:
                    break
                if got or (state["first"] is not None and not block):
                    idle = now - state["last"]
                    if idle >= quiet or (span is not None and now - state["first"] >= span):
                        break
                    link.drain(min(quiet - idle, hard - now))
                else:
                    if now - begin >= wait_first:
                        break
                    link.drain(min(begin + wait_first - now, hard - now))
        finally:
            if channel.is_open:
                channel.close()
        if limit is not None:
            got = got[:limit]
        missing_anchor = bool(after) and state["first"] is None
        return got, bool(state["reset"] or missing_anchor)

    @staticmethod
    def _read_through(
        link: Link, name: str, state: dict[str, Any], until: int, first_by: float
    ) -> None:
        """:meth:`_attach`'s reads until its consumer has had offset ``until`` or a later one."""
        hard = time.monotonic() + PUBLISH_TIMEOUT
        while state["top"] < until:
            now = time.monotonic()
            if state["first"] is None and now >= first_by:
                return  # nothing at all from its start: nothing there up to ``until`` either
            if now >= hard:
                raise BackendUnavailable(f"could not read stream {name!r} through to its end")
            link.drain((first_by if state["first"] is None else hard) - now)

    def _newest_offset(
        self, link: Link, name: str, first_within: float | None = None
    ) -> int | None:
        # The last chunk comes at once; a busy stream's later chunks are newer still.
        messages, _ = self._attach(
            link, name, "last", after=None, span=self.read_quiet * 4, first_within=first_within
        )
        return max(stream_offset(m) for m in messages) if messages else None

    def read(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        position = None if after is None else parse_id(after)

        def call(link: Link) -> StreamRead:
            name = self._stream(link, stream)
            start: Any = position - 1 if position else "first"
            messages, reset = self._attach(
                link, name, start, after=position, limit=limit, block=block
            )
            if reset and not messages and position:
                # Nothing came, not even the message at the reader's id. A stream that holds
                # that offset or a later one delivers it: RabbitMQ was slow (a busy machine),
                # and a reset now would make the client reload for nothing. Otherwise it is
                # an id the stream never gave (or one whose messages were all dropped).
                newest = self._newest_offset(link, name, first_within=ANCHOR_WAIT)
                if newest is not None and newest >= position - 1:
                    messages, reset = self._attach(
                        link,
                        name,
                        start,
                        after=position,
                        limit=limit,
                        block=block,
                        first_within=ANCHOR_WAIT,
                    )
            if reset and not messages and position:
                # Start again from the oldest kept.
                messages, _ = self._attach(link, name, "first", after=None, limit=limit)
            return StreamRead(
                [StreamMessage(message_id(stream_offset(m)), body(m)) for m in messages],
                reset,
            )

        return self._run("read", call)

    def last_id(self, stream: str) -> str | None:
        def call(link: Link) -> str | None:
            newest = self._newest_offset(link, self._stream(link, stream))
            return None if newest is None else message_id(newest)

        return self._run("last_id", call)

    def id_key(self, message_id: str) -> tuple[int, ...]:
        return (parse_id(message_id),)

    def follow(
        self,
        stream: str,
        after: str | None = None,
        *,
        stop: threading.Event | None = None,
        poll: float = 1.0,
    ) -> Iterator[StreamRead]:
        """One stream consumer on a connection of its own; through outages it reconnects
        with back-off and re-attaches at the last message it yielded."""
        position: int | None = None if after is None else parse_id(after)
        # Without ``after``, attach at the end ("next"). Should the connection break before a
        # first message came, re-attach at the time we started instead (RabbitMQ finds the
        # chunk by its timestamp, to the second), so nothing published meanwhile is missed.
        since: datetime | None = None
        outage = Outage(cast(Backend, self))  # a mixin of the backend
        resumed = after is None
        while stop is None or not stop.is_set():
            conn: Any = None
            try:
                if not resumed:
                    # A resumed follower reads first, as every backend's follower does: an id
                    # lost to retention, or one the stream never gave, is answered with a reset
                    # and the oldest message kept, and the consumer attaches after it. One
                    # message: a read of a busy stream would go on until its cap.
                    first = self.read(stream, after, limit=1)
                    resumed = True
                    if first.messages:
                        position = int(first.messages[-1].id)
                    elif first.reset:
                        position = 0
                    if first.messages or first.reset:
                        yield first
                    continue
                conn = self._connect()
                raw = conn.connection
                link = Link(self, 0)
                link.conn, link.channel = conn, conn.channel()
                name = self._stream(link, stream)
                channel = conn.channel()
                channel.basic_qos(0, STREAM_CREDIT, False)
                pending: list[Any] = []
                if position is None:
                    start: Any = "next" if since is None else since
                else:
                    start = position - 1 if position else "first"
                channel.basic_consume(
                    name, callback=pending.append, arguments={"x-stream-offset": start}
                )
                if since is None:
                    since = datetime.now(UTC).replace(microsecond=0)
                outage.recovered()
                expected = None if position is None else max(position - 1, 0)
                quiet_since, known = time.monotonic(), position
                unacked, first_unacked, last_tag = 0, 0.0, 0
                while stop is None or not stop.is_set():
                    # Straight on this connection: a follower never reconnects silently.
                    if not read_frame(raw, poll, self.beat):
                        if unacked:
                            channel.basic_ack(last_tag, multiple=True)
                            unacked = 0
                        if time.monotonic() - quiet_since >= FOLLOW_CHECK:
                            latest = self.last_id(stream)  # on this thread's other connection
                            newest = parse_id(latest) if latest else 0
                            if known is not None and newest > known:
                                raise _Hung(f"the consumer of {name!r} missed {latest}")
                            known, quiet_since = newest, time.monotonic()
                        continue
                    while len(pending) < STREAM_CREDIT and read_frame(raw, 0.0, self.beat):
                        pass
                    if not pending:
                        continue
                    quiet_since = now = time.monotonic()
                    batch, pending[:] = list(pending), []
                    last_tag = batch[-1].delivery_info["delivery_tag"]
                    if not unacked:
                        first_unacked = now
                    unacked += len(batch)
                    if unacked >= FOLLOW_ACK_EVERY or now - first_unacked >= FOLLOW_ACK_DELAY:
                        channel.basic_ack(last_tag, multiple=True)
                        unacked = 0
                    reset = False
                    messages = []
                    for message in batch:
                        offset = stream_offset(message)
                        if expected is not None:
                            reset = offset != expected
                            expected = None
                            if not reset and position:
                                continue  # the message we re-attached at
                        if position is not None and offset < position:
                            continue
                        messages.append(StreamMessage(message_id(offset), body(message)))
                    if messages:
                        position = known = int(messages[-1].id)
                    if messages or reset:
                        yield StreamRead(messages, reset)
                return
            except (
                BackendUnavailable,
                _Hung,
                *self.connection_errors,
                amqp.exceptions.ChannelError,
            ) as exc:
                if isinstance(exc, amqp.exceptions.ChannelError) and not (
                    recovering(exc) or closed_by_broker(exc)
                ):
                    raise
                # Down, restarting, or closed our consumer: reported once, tried again.
                if outage.wait(exc, stop):
                    return
            finally:
                if conn is not None:
                    try:
                        conn.release()
                    except Exception as exc:
                        logger.debug("closing a follower's connection failed: %s", exc)

    async def afollow(
        self, stream: str, after: str | None = None, *, poll: float = 1.0
    ) -> AsyncIterator[StreamRead]:
        """:meth:`follow` in a thread, handed over to the event loop."""
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[StreamRead | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def run() -> None:
            try:
                for batch in self.follow(stream, after, stop=stop, poll=poll):
                    loop.call_soon_threadsafe(batches.put_nowait, batch)
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(batches.put_nowait, exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed first
                    loop.call_soon_threadsafe(batches.put_nowait, None)

        thread = threading.Thread(target=run, name=f"notify-amqp-follow-{stream}", daemon=True)
        thread.start()
        try:
            while True:
                item = await batches.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
