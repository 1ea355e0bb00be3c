"""One follower per stream per process, fanned out to any number of local subscribers.

Web adapters subscribe each browser here instead of opening a broker
connection per client: a :class:`Fanout` runs one background thread per
stream (``backend.follow``) and hands every batch, the same bytes, to each
subscriber's bounded buffer. A subscriber that falls more than ``max_pending``
messages behind is disconnected (the ``disconnect`` slow-client policy): it resumes
with its last id and never delays the others.

A subscription can start from an id (``Last-Event-ID``): it replays what the
backend still keeps after that id, then continues live without a gap or a
duplicate, because live batches that arrive during the replay are held and
filtered by id.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from notifycore.backends.base import StreamRead

if TYPE_CHECKING:
    from notifycore.backends.base import Backend

__all__ = ["Fanout", "Subscription"]

logger = logging.getLogger("notifycore.fanout")


class Subscription:
    """One subscriber of one stream: read batches with :meth:`get` or :meth:`aget`."""

    def __init__(self, feed: _Feed, max_pending: int) -> None:
        self._feed = feed
        self.stream = feed.stream
        self.max_pending = max_pending
        self._pending: deque[StreamRead] = deque()
        self._pending_messages = 0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._replaying = True
        self._held: list[StreamRead] = []
        # Until a live batch goes past it, the key of the newest message the replay queued:
        # the feed may offer batches it read before the replay did (see _offer).
        self._replayed: Any = None
        self._key: Callable[[str], Any] | None = None
        #: Why the subscription ended: ``"slow"``, ``"closed"`` or ``"shutdown"``; None while open.
        self.closed_reason: str | None = None
        #: The id of the newest message handed to the subscriber.
        self.last_id: str | None = None

    def __repr__(self) -> str:
        return f"<Subscription {self.stream!r} pending={len(self._pending)} closed={self.closed_reason}>"

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    # -- fed by the stream's thread ----------------------------------------------------------

    def _offer(self, batch: StreamRead) -> None:
        with self._lock:
            if self.closed_reason is not None:
                return
            if self._replaying:
                self._held.append(batch)
                return
            if self._replayed is not None and batch.messages:
                # The feed took its list of subscribers, then the replay read the backend
                # before the feed offered what it had read: those messages are queued already.
                batch = self._after_replay(batch)
                if not batch.messages and not batch.reset:
                    return
            # One batch is always taken by a reader who is keeping up, however large.
            if self._pending and self._pending_messages + len(batch.messages) > self.max_pending:
                self._end("slow")
                return
            self._push(batch)
            self._notify()

    def _after_replay(self, batch: StreamRead) -> StreamRead:
        assert self._key is not None
        key, limit = self._key, self._replayed
        if key(batch.messages[0].id) > limit:
            self._replayed = None  # batches come in order: every later one is newer too
            return batch
        fresh = [m for m in batch.messages if key(m.id) > limit]
        if fresh:
            self._replayed = None
        return StreamRead(fresh, batch.reset)

    def _push(self, batch: StreamRead) -> None:
        self._pending.append(batch)
        self._pending_messages += len(batch.messages)

    def _start(self, history: StreamRead, newest: str | None, key: Callable[[str], Any]) -> None:
        """Deliver the replay, then the live batches held meanwhile, less what it already had.

        ``newest`` is the id the subscriber has everything up to (None: nothing yet).
        """
        with self._lock:
            if history.messages or history.reset:
                self._push(history)
            limit = None if newest is None else key(newest)
            for batch in self._held:
                messages = batch.messages
                if limit is not None:
                    messages = [m for m in messages if key(m.id) > limit]
                if messages:
                    self._push(StreamRead(messages, batch.reset))
            self._held = []
            newest_queued = next(
                (b.messages[-1].id for b in reversed(self._pending) if b.messages), newest
            )
            self._key = key
            self._replayed = None if newest_queued is None else key(newest_queued)
            self._replaying = False
            self._notify()

    def _notify(self) -> None:
        self._ready.notify_all()
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _end(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self._notify()

    # -- read by the subscriber --------------------------------------------------------------

    def _take(self) -> StreamRead | None:
        if not self._pending:
            return None
        batch = self._pending.popleft()
        self._pending_messages -= len(batch.messages)
        if batch.messages:
            self.last_id = batch.messages[-1].id
        return batch

    def get(self, timeout: float | None = None) -> StreamRead | None:
        """The next batch; None after ``timeout`` seconds, or once closed and drained."""
        with self._lock:
            if not self._pending and self.closed_reason is None:
                self._ready.wait(timeout)
            return self._take()

    async def aget(self, timeout: float | None = None) -> StreamRead | None:
        """:meth:`get` for asyncio; the subscription binds to the first loop that calls it."""
        with self._lock:
            batch = self._take()
            if batch is not None or self.closed_reason is not None:
                return batch
            if self._wakeup is None:
                self._loop = asyncio.get_running_loop()
                self._wakeup = asyncio.Event()
            self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return None
        with self._lock:
            return self._take()

    def close(self) -> None:
        """Stop receiving; the stream's thread stops when its last subscriber leaves."""
        with self._lock:
            self._end("closed")
        self._feed.remove(self)


class _Feed:
    """The one follower of one stream in this process."""

    def __init__(self, fanout: Fanout, stream: str) -> None:
        self.fanout = fanout
        self.stream = stream
        self.subscribers: set[Subscription] = set()
        self.stop = threading.Event()
        backend = fanout.backend
        self.start_id = backend.last_id(stream)
        self.thread = threading.Thread(
            target=self._run, name=f"notifycore-feed-{stream}", daemon=True
        )
        self.thread.start()

    def _run(self) -> None:
        backend = self.fanout.backend
        cursor = self.start_id or "0"
        delay = 0.05
        while not self.stop.is_set():
            try:
                for batch in backend.follow(
                    self.stream, cursor, stop=self.stop, poll=self.fanout.poll
                ):
                    if batch.messages:
                        cursor = batch.messages[-1].id
                    for subscriber in list(self.subscribers):
                        subscriber._offer(batch)
                    delay = 0.05
            except Exception:  # keep following: a broker hiccup must not end every stream
                logger.exception("following %s failed; trying again", self.stream)
                self.stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def remove(self, subscriber: Subscription) -> None:
        self.fanout._remove(self, subscriber)


class Fanout:
    """Shares one follower per stream among every local subscriber."""

    def __init__(self, backend: Backend, *, poll: float = 1.0, max_pending: int = 1000) -> None:
        self.backend = backend
        self.poll = poll
        self.max_pending = max_pending
        self._feeds: dict[str, _Feed] = {}
        self._stopped: list[_Feed] = []  # stopped, maybe not yet ended: close() waits for them
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Fanout streams={sorted(self._feeds)}>"

    @property
    def streams(self) -> list[str]:
        """The streams followed now (one thread each)."""
        return sorted(self._feeds)

    def subscribe(
        self, stream: str, after: str | None = None, *, max_pending: int | None = None
    ) -> Subscription:
        """Subscribe to ``stream``: from now on, or replaying what came after ``after`` first."""
        with self._lock:
            feed = self._feeds.get(stream)
            if feed is None:
                feed = self._feeds[stream] = _Feed(self, stream)
            subscription = Subscription(feed, max_pending or self.max_pending)
            feed.subscribers.add(subscription)
        key = self.backend.id_key
        try:
            if after is None:
                # Live only: whatever the stream held when we joined is not ours.
                subscription._start(StreamRead([]), self.backend.last_id(stream), key)
            else:
                history = self.backend.read(stream, after)
                if history.messages:
                    newest: str | None = history.messages[-1].id
                else:
                    newest = None if history.reset else after
                subscription._start(history, newest, key)
        except BaseException:
            subscription.close()
            raise
        return subscription

    def _remove(self, feed: _Feed, subscriber: Subscription) -> None:
        with self._lock:
            feed.subscribers.discard(subscriber)
            if not feed.subscribers and self._feeds.get(feed.stream) is feed:
                del self._feeds[feed.stream]
                feed.stop.set()
                self._stopped = [f for f in self._stopped if f.thread.is_alive()]
                self._stopped.append(feed)

    def close(self) -> None:
        """End every subscription (reason ``"shutdown"``) and stop every stream's thread."""
        with self._lock:
            feeds, self._feeds = list(self._feeds.values()), {}
            stopped, self._stopped = self._stopped, []
        for feed in feeds:
            feed.stop.set()
            for subscriber in list(feed.subscribers):
                with subscriber._lock:
                    subscriber._end("shutdown")
        for feed in [*feeds, *stopped]:
            feed.thread.join(self.poll + 5)
