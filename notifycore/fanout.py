"""One follower per stream per process, fanned out to any number of local subscribers.

Web adapters subscribe each browser here instead of opening a broker
connection per client: a :class:`Fanout` runs one background thread per
stream (``backend.follow``) and hands every batch, the same bytes, to each
subscriber's bounded buffer. A backend that sees every publish itself (memory:
``backend.listen``) hands the batches over in the publisher's call instead, and
no thread follows the stream. A subscriber that falls more than ``max_pending``
messages behind is disconnected (the ``disconnect`` slow-client policy): it resumes
with its last id and never delays the others.

A subscription can start from an id (``Last-Event-ID``): it replays what the
backend still keeps after that id, then continues live without a gap or a
duplicate, because live batches that arrive during the replay are held and
filtered by id.

Subscribers read with :meth:`Subscription.get` (threads) or
:meth:`Subscription.aget` (asyncio). The stream's thread hands a batch to
its thread readers itself; the subscriptions read from one event loop are a
*group*, handed each batch with one ``call_soon_threadsafe`` per loop, and
the loop then offers it to every member and wakes the waiting ones — a
thousand browsers on one loop cost one cross-thread wake-up per batch, not a
thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from notifycore.backends.base import StreamRead

if TYPE_CHECKING:
    from notifycore.backends.base import Backend

__all__ = ["Fanout", "Subscription"]

logger = logging.getLogger("notifycore.fanout")

T = TypeVar("T")

_running_loop = asyncio._get_running_loop  # the C accessor: no error when there is none


_NOTHING: tuple[()] = ()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """One subscriber of one stream: read batches with :meth:`get` or :meth:`aget`.

    A subscription is read from one event loop at most (the first one that
    calls :meth:`aget`); :meth:`get` works from any thread, before or after.
    """

    __slots__ = (
        "_deadline",
        "_feed",
        "_first",
        "_held",
        "_key",
        "_lock",
        "_loop",
        "_pending",
        "_pending_messages",
        "_ready",
        "_replayed",
        "_replaying",
        "_sync_waiters",
        "_timer",
        "_waiter",
        "_watcher",
        "closed_reason",
        "last_id",
        "max_pending",
        "stream",
    )

    def __init__(self, feed: _Feed, max_pending: int) -> None:
        self._feed = feed
        self.stream = feed.stream
        self.max_pending = max_pending
        # The oldest batch waiting, then the later ones: a reader keeping up has one batch at
        # most, held without a container made and dropped per event (a thousand readers each
        # allocating one per event is what sends young objects to the garbage collector's
        # oldest generation). A deque only while more wait: an idle subscriber holds the shared
        # empty tuple (an empty deque is ~600 bytes, per connection).
        self._first: StreamRead | None = None
        self._pending: deque[StreamRead] | tuple[()] = _NOTHING
        self._pending_messages = 0
        self._lock = threading.Lock()
        # Made by the first get(): an asyncio reader never needs one.
        self._ready: threading.Condition | None = None
        self._sync_waiters = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        # watch()'s callback: a reader with no task waiting in aget.
        self._watcher: Callable[[], None] | None = None
        # aget's time limit: one timer at a time, moved only when a wait ends sooner.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
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
        waiting = len(self._pending) + (self._first is not None)
        return f"<Subscription {self.stream!r} pending={waiting} closed={self.closed_reason}>"

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    # -- fed by the stream's thread, or by the subscriber's event loop -----------------------

    def _offer(self, batch: StreamRead, defer: bool = False) -> asyncio.Future[None] | None:
        """Queue ``batch`` and wake the reader.

        ``defer`` (the group, in the reader's loop): the asyncio reader is not
        woken here; its waiting future is returned for the group to wake in
        its turn. Only a batch that finds nothing pending returns one: a reader
        with batches pending was woken (or will be) already, and takes them all.
        """
        with self._lock:
            if self.closed_reason is not None:
                return None
            if self._replaying:
                self._held.append(batch)
                return None
            if self._replayed is not None and batch.messages:
                # The feed took its list of subscribers, then the replay read the backend
                # before the feed offered what it had read: those messages are queued already.
                batch = self._after_replay(batch)
                if not batch.messages and not batch.reset:
                    return None
            # One batch is always taken by a reader who is keeping up, however large.
            pending = self._first is not None
            if pending and self._pending_messages + len(batch.messages) > self.max_pending:
                self._end("slow")
                return None
            self._push(batch)
            if defer and not self._sync_waiters and self._watcher is None:
                # A watched subscription is called back at once: its callback only notes
                # the work for the loop's one writer, which paces itself.
                return None if pending else self._waiter
            self._notify()
            return None

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
        if self._first is None:
            self._first = batch
        else:
            pending = self._pending
            if isinstance(pending, deque):
                pending.append(batch)
            else:
                self._pending = deque((batch,))
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
            queued = [self._first, *self._pending] if self._first is not None else []
            newest_queued = next(
                (b.messages[-1].id for b in reversed(queued) if b.messages), newest
            )
            self._key = key
            self._replayed = None if newest_queued is None else key(newest_queued)
            self._replaying = False
            self._notify()

    def _notify(self) -> None:
        """Wake the reader (called with the lock held)."""
        if self._sync_waiters:
            assert self._ready is not None
            self._ready.notify_all()
        waiter = self._waiter
        if waiter is not None:
            self._in_loop(_wake, waiter)
        watcher = self._watcher
        if watcher is not None:
            self._in_loop(watcher)

    def _in_loop(self, function: Callable[..., None], *args: Any) -> None:
        """Call ``function`` in the subscriber's loop: now when we are in it, else soon."""
        loop = self._loop
        if _running_loop() is loop:
            try:
                function(*args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # a watch callback's: the group's delivery goes on
                # (CancelledError too: as the loop's own callbacks are run)
                if loop is None:  # no loop at all: nobody else to tell
                    raise
                loop.call_exception_handler(
                    {"message": f"calling back {self!r} failed", "exception": exc}
                )
        else:
            assert loop is not None
            # A closed loop: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(function, *args)

    def _end(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self._notify()

    # -- read by the subscriber --------------------------------------------------------------

    def _take(self) -> StreamRead | None:
        batch = self._first
        if batch is None:
            return None
        self._first = self._next()
        self._pending_messages -= len(batch.messages)
        if batch.messages:
            self.last_id = batch.messages[-1].id
        return batch

    def _next(self) -> StreamRead | None:
        """The batch after ``_first`` (taken off the later ones), None if none waits."""
        pending = self._pending
        if not isinstance(pending, deque) or not pending:  # none, or _take_run emptied it
            self._pending = _NOTHING
            return None
        batch = pending.popleft()
        if not pending:
            self._pending = _NOTHING
        return batch

    def _take_run(self) -> list[StreamRead] | None:
        """Every pending batch up to the next one that starts with a reset (it starts a run)."""
        first = self._first
        if first is None:
            return None
        run = [first]
        pending = self._pending
        if isinstance(pending, deque):
            while pending and not pending[0].reset:
                run.append(pending.popleft())
        self._first = self._next()
        count = 0
        for batch in run:
            count += len(batch.messages)
            if batch.messages:
                self.last_id = batch.messages[-1].id
        self._pending_messages -= count
        return run

    def get(self, timeout: float | None = None) -> StreamRead | None:
        """The next batch; None after ``timeout`` seconds, or once closed and drained."""
        with self._lock:
            if self._first is None and self.closed_reason is None:
                if self._ready is None:
                    self._ready = threading.Condition(self._lock)
                self._sync_waiters += 1
                try:
                    self._ready.wait(timeout)
                finally:
                    self._sync_waiters -= 1
            return self._take()

    async def aget(self, timeout: float | None = None) -> StreamRead | None:
        """:meth:`get` for asyncio; the subscription is read from the first loop that calls it."""
        return await self._aget(timeout, self._take)

    def aget_run(
        self, timeout: float | None = None
    ) -> Coroutine[Any, Any, list[StreamRead] | None]:
        """``await aget_run()``: :meth:`aget`, but every batch waiting (up to the next reset).

        A reader that fell behind (a burst, a busy loop) catches up with one
        write instead of one per batch; the first batch of the run may carry a
        reset, no later one does. (A plain method handing back the coroutine:
        one coroutine less per delivery on the hot path.)
        """
        return self._aget(timeout, self._take_run)

    def wait_future(self, timeout: float | None = None) -> asyncio.Future[None] | None:
        """:meth:`aget_run` in two plain calls, for a reader that awaits in its own coroutine:
        None when a batch (or the end) is there now, else a future done once one comes or
        ``timeout`` seconds passed. Either way, then take what came with :meth:`take_run`.

        (The streaming writers' hot path: no coroutine per wait. With a thousand readers
        waiting for the next event, that is a thousand objects fewer for the garbage
        collector to carry into its oldest generation, and so fewer full collections.)
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._feed.bind(self, loop)
        with self._lock:
            if self._first is not None or self.closed_reason is not None:
                return None
            waiter = self._waiter = loop.create_future()
        if timeout is not None:
            self._deadline = deadline = loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._expire)
        return waiter

    def take_run(self) -> list[StreamRead] | None:
        """Every batch waiting, up to the next reset (see :meth:`aget_run`); None if none
        waits. Never waits: call it once :meth:`wait_future`'s future is done."""
        with self._lock:
            waiter = self._waiter
            if waiter is not None and waiter.done():
                self._waiter = None
                self._deadline = None
            return self._take_run()

    async def _aget(self, timeout: float | None, take: Callable[[], T | None]) -> T | None:
        waiter = self.wait_future(timeout)
        if waiter is not None:
            try:
                await waiter
            finally:
                self._waiter = None
                self._deadline = None
        with self._lock:
            return take()

    def watch(self, callback: Callable[[], None] | None) -> None:
        """Read from the running event loop without a task waiting in :meth:`aget`.

        ``callback()`` is called in this loop whenever a batch arrives or the
        subscription ends (at once if one waits already); take the batches
        with :meth:`take`. It may be called with the subscription's lock held:
        it must only note that there is work, never read the subscription
        itself. ``None`` stops the calls. An exception it raises goes to the loop's
        exception handler; the batch stays queued, and the other subscribers get it.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._feed.bind(self, loop)
        with self._lock:
            self._watcher = callback
            if callback is not None and (self._first is not None or self.closed_reason is not None):
                callback()

    def take(self) -> StreamRead | None:
        """The next batch if one waits, else None (never waits)."""
        with self._lock:
            return self._take()

    def _expire(self) -> None:
        """aget's timer: end the wait if its time is up, else wait on until it is."""
        self._timer = None
        deadline, waiter, loop = self._deadline, self._waiter, self._loop
        if deadline is None or waiter is None or loop is None:
            return  # no wait now: the next one sets a timer again
        if loop.time() >= deadline:
            _wake(waiter)
        else:
            self._timer = loop.call_at(deadline, self._expire)

    def close(self) -> None:
        """Stop receiving; the stream's thread stops when its last subscriber leaves."""
        with self._lock:
            self._end("closed")
        timer, self._timer = self._timer, None
        if timer is not None and _running_loop() is self._loop:
            timer.cancel()
        self._feed.remove(self)


#: Readers a group wakes per turn of its event loop while batches come faster than it
#: writes them (see :class:`_Group`).
WAKE_PER_TURN = 16
#: A batch that comes within this many times the last sweep's duration of the previous
#: one finds the group busy: its readers are woken a few per turn.
PACE_WITHIN = 1.5


class _Group:
    """The subscriptions of one feed read from one event loop: fed in that loop.

    Every batch is queued on every member at once. A batch that comes when
    the group is idle wakes every waiting reader at once (a *sweep*: each
    writes it in the loop's next turn). A batch that comes while the group
    is busy — the last one is not a sweep's time old, or readers are still
    waiting to be woken — wakes them :data:`WAKE_PER_TURN` at a time, one
    turn of the loop after another, oldest first: between two turns the loop
    takes in what arrived (the request publishing the next event...), and
    the readers not yet woken then take every batch queued meanwhile in one
    write. So a burst to a thousand clients costs one write per client per
    sweep, not one per event; events one at a time are written at once.
    """

    __slots__ = (
        "feed",
        "last",
        "loop",
        "members",
        "pending",
        "roll",
        "scheduled",
        "sweep",
        "to_wake",
        "took",
        "waking",
    )

    def __init__(self, feed: _Feed, loop: asyncio.AbstractEventLoop) -> None:
        self.feed = feed
        self.loop = loop
        # Each member, with the number of the first batch it takes from the group
        # (the ones before were offered to it by the stream's thread).
        self.members: dict[Subscription, int] = {}
        #: ``members`` as a list, made again only once they changed (None): one copy per
        #: batch was a thousand (member, number) pairs made and dropped per event.
        self.roll: list[tuple[Subscription, int]] | None = None
        self.pending: list[tuple[int, StreamRead]] = []
        self.scheduled = False
        #: The futures of readers to wake, in the order their batches came.
        self.to_wake: deque[asyncio.Future[None]] = deque()
        self.waking = False
        #: When the last batch came (loop time); how long its readers' last sweep took, and
        #: the shorter of the last two (what a batch's pace is measured against).
        self.last = float("-inf")
        self.took = float("inf")
        self.sweep = 0.0

    def post(self, number: int, batch: StreamRead) -> bool:
        """Queue a batch for the loop (the feed's lock held); False if the loop is closed."""
        self.pending.append((number, batch))
        if self.scheduled:
            return True
        loop = self.loop
        try:
            if _running_loop() is loop:  # published in this loop: no wake-up across threads
                loop.call_soon(self.deliver)
            else:
                loop.call_soon_threadsafe(self.deliver)
        except RuntimeError:
            return False
        self.scheduled = True
        return True

    def deliver(self) -> None:
        """In the loop: offer what was posted to every member (each wakes if it waits)."""
        with self.feed.lock:
            pending, self.pending = self.pending, []
            self.scheduled = False
            members = self.roll
            if members is None:
                members = self.roll = list(self.members.items())
        for run in _runs(pending):
            first = run[0][0]
            if len(run) == 1:
                merged = run[0][1]
            else:  # posted while the loop was busy: one batch, so one write per member
                merged = StreamRead([m for _, b in run for m in b.messages], run[0][1].reset)
            to_wake = self.to_wake
            for subscription, joined in members:
                if joined <= first:
                    waiter = subscription._offer(merged, True)
                    if waiter is not None:
                        to_wake.append(waiter)
                else:  # joined within the run (rare): from its own first batch on
                    for number, batch in run:
                        if joined <= number:
                            subscription._offer(batch)
        now = self.loop.time()
        busy = self.waking or now - self.last < PACE_WITHIN * self.sweep
        self.last = now
        if not busy:
            self.wake_all(now)
        elif not self.waking:
            self.wake_some()

    def wake_all(self, now: float) -> None:
        """Wake every reader; time their writes (they run in the loop's next turn)."""
        to_wake = self.to_wake
        while to_wake:
            waiter = to_wake.popleft()
            if not waiter.done():
                waiter.set_result(None)
        self.loop.call_soon(self._swept, now)  # runs after the woken readers

    def _swept(self, started: float) -> None:
        # The shorter of the last two: one sweep that a pause made long (a full garbage
        # collection: 30-100 ms with a thousand connections) must not make the next batch,
        # come at the usual pace, look like a burst, and be woken a few readers per turn.
        took = self.loop.time() - started
        self.sweep = min(took, self.took)
        self.took = took

    def wake_some(self) -> None:
        """Wake the next :data:`WAKE_PER_TURN` readers; the rest at the loop's next turn."""
        to_wake = self.to_wake
        woken = 0
        while to_wake and woken < WAKE_PER_TURN:
            waiter = to_wake.popleft()
            if not waiter.done():  # else it timed out, or the reader left
                waiter.set_result(None)
                woken += 1
        self.waking = bool(to_wake)
        if to_wake:
            self.loop.call_soon(self.wake_some)
        else:  # all woken: timed as a sweep from the last batch, so the pace is measured
            # again (a group once taken for busy stayed so while events came within 1.5
            # times the last sweep before, however short their own wake-ups were)
            self.loop.call_soon(self._swept, self.last)


def _runs(pending: list[tuple[int, StreamRead]]) -> list[list[tuple[int, StreamRead]]]:
    """Consecutive batches to merge: a batch that starts with a reset starts a new run."""
    runs: list[list[tuple[int, StreamRead]]] = []
    for item in pending:
        if runs and not item[1].reset:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


class _Feed:
    """The one follower of one stream in this process."""

    def __init__(self, fanout: Fanout, stream: str) -> None:
        self.fanout = fanout
        self.stream = stream
        self.lock = threading.Lock()
        #: Subscriptions the stream's thread offers each batch to itself.
        self.direct: set[Subscription] = set()
        #: The subscriptions read from each event loop.
        self.groups: dict[asyncio.AbstractEventLoop, _Group] = {}
        #: Batches handed out so far: a subscription joining a group knows which are its.
        self.number = 0
        self.stop = threading.Event()
        backend = fanout.backend
        # A backend that sees every publish hands each batch over itself: no thread.
        self.unlisten = backend.listen(stream, self._dispatch)
        self.thread: threading.Thread | None = None
        if self.unlisten is None:
            # Followed from what the stream holds now (a subscription replays what it lacks).
            self.start_id = backend.last_id(stream)
            self.thread = threading.Thread(
                target=self._run, name=f"notifycore-feed-{stream}", daemon=True
            )
            self.thread.start()

    @property
    def subscribers(self) -> list[Subscription]:
        """Every subscription of the stream (a copy)."""
        with self.lock:
            found = list(self.direct)
            for group in self.groups.values():
                found.extend(group.members)
            return found

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
                    self._dispatch(batch)
                    delay = 0.05
            except Exception:  # keep following: a broker hiccup must not end every stream
                logger.exception("following %s failed; trying again", self.stream)
                self.stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _dispatch(self, batch: StreamRead) -> None:
        closed: list[_Group] = []
        with self.lock:
            number = self.number
            self.number += 1
            direct = list(self.direct)
            for group in self.groups.values():
                if not group.post(number, batch):
                    closed.append(group)
        for subscriber in direct:
            subscriber._offer(batch)
        if closed:
            if self.thread is None:  # in the publisher's call, maybe under the backend's lock
                threading.Thread(target=_close_groups, args=(closed,), daemon=True).start()
            else:
                _close_groups(closed)

    def halt(self) -> None:
        """Stop following the stream (the thread ends within a poll)."""
        self.stop.set()
        if self.unlisten is not None:
            self.unlisten()

    def add(self, subscription: Subscription) -> None:
        with self.lock:
            self.direct.add(subscription)

    def bind(self, subscription: Subscription, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, hand ``subscription``'s batches to it in ``loop``."""
        with self.lock:
            if subscription._loop is not None:
                raise RuntimeError("a subscription is read from one event loop only")
            subscription._loop = loop
            if subscription not in self.direct:
                return  # closed already
            self.direct.discard(subscription)
            group = self.groups.get(loop)
            if group is None:
                group = self.groups[loop] = _Group(self, loop)
            group.members[subscription] = self.number
            group.roll = None

    def discard(self, subscription: Subscription) -> bool:
        """Forget ``subscription``; True when the stream has no subscriber left."""
        with self.lock:
            self.direct.discard(subscription)
            loop = subscription._loop
            group = self.groups.get(loop) if loop is not None else None
            if group is not None:
                if group.members.pop(subscription, None) is not None:
                    group.roll = None
                if not group.members:
                    del self.groups[group.loop]
            return not self.direct and not self.groups

    def remove(self, subscriber: Subscription) -> None:
        self.fanout._remove(self, subscriber)


def _close_groups(groups: list[_Group]) -> None:
    """Close the subscriptions of groups whose loop is gone: no one can read them any more."""
    for group in groups:
        for subscriber in list(group.members):
            subscriber.close()


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
            feed.add(subscription)
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
            if feed.discard(subscriber) and self._feeds.get(feed.stream) is feed:
                feed.halt()  # first: a stream no longer listed is no longer followed
                del self._feeds[feed.stream]
                if feed.thread is not None:
                    self._stopped = [f for f in self._stopped if _alive(f)]
                    self._stopped.append(feed)

    def close(self) -> None:
        """End every subscription (reason ``"shutdown"``) and stop every stream's thread."""
        with self._lock:
            feeds, self._feeds = list(self._feeds.values()), {}
            stopped, self._stopped = self._stopped, []
        for feed in feeds:
            feed.halt()
            for subscriber in feed.subscribers:
                with subscriber._lock:
                    subscriber._end("shutdown")
        for feed in [*feeds, *stopped]:
            if feed.thread is not None:
                feed.thread.join(self.poll + 5)


def _alive(feed: _Feed) -> bool:
    return feed.thread is not None and feed.thread.is_alive()
