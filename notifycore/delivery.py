"""Delivery: route an event through the hubs' filters and run its consumers with their hooks.

``Notifications.send``/``asend`` and the :class:`~notifycore.worker.Worker`
both sit on one :class:`Delivery`. It holds the hubs (an immutable snapshot a
send reads without a lock), matches an event against hub and consumer filters,
runs inline consumers with the plugin and consumer hooks, reports errors and
counts them, and enqueues one job per queued consumer.

Sync and async code share one implementation. A delivery is written once, as
a generator of *steps*: it yields only what must be awaited (an ``async def``
consumer or hook) and gets the result back; what it produces lands in the
:class:`~notifycore.result.SendResult` or
:class:`~notifycore.result.ConsumerOutcome` it is given. :meth:`Delivery.drive`
runs those awaitables on a helper event loop, holding a consumer to its time
limit; :meth:`Delivery.adrive` awaits them in the caller's loop. A sync
consumer with sync hooks yields nothing, so the sync path never touches an
event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

from notifycore.backends.base import Backend
from notifycore.errors import ConfigurationError, ConsumerError, ConsumerTimeout, UnknownHub
from notifycore.event import Event
from notifycore.filters import runs_app_code
from notifycore.hub import HUB_ID_PREFIX, Hub, Registration
from notifycore.jobs import encode_job
from notifycore.loop_thread import LoopThread, TimedOut
from notifycore.plugins import Plugins
from notifycore.result import ConsumerOutcome, SendResult, Status

if TYPE_CHECKING:
    from notifycore.inbox import NotificationCentre, PreferenceCheck

__all__ = ["Delivery", "Steps"]

_utc = UTC
_now = datetime.now
#: A delivery in steps: yields awaitables and is sent their results.
Steps: TypeAlias = Generator[Awaitable[Any], Any, None]
_DONE: Any = object()
_RAN, _ENQUEUED, _FAILED = Status.RAN, Status.ENQUEUED, Status.FAILED
_EXPIRED, _FILTERED = Status.EXPIRED, Status.FILTERED

#: An inline run; its own event when preferences narrowed the recipients, else None.
_Inline = list[tuple[Hub, Registration, ConsumerOutcome, Event | None]]
_Queued = dict[str, list[tuple[ConsumerOutcome, bytes]]]
_Broken = list[tuple[Hub, str, Exception]]


def _cancelling() -> bool:
    """Whether the running task is being cancelled (not merely an awaitable inside it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Consume:
    """What an async consumer returned: the one kind of step :meth:`Delivery.drive` holds to
    a time limit (``timeout`` seconds; None: none)."""

    __slots__ = ("awaitable", "timeout")

    def __init__(self, awaitable: Awaitable[Any], timeout: float | None) -> None:
        self.awaitable = awaitable
        self.timeout = timeout

    def __await__(self) -> Generator[Any, None, Any]:
        return self.awaitable.__await__()


class Delivery:
    """Routes events to the consumers of matching hubs and runs them (see the module).

    :meth:`configure` gives it its settings and backend; the entry object
    (:class:`~notifycore.Notifications`) does that, then creates hubs.
    """

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins
        self._backend: Backend | None = None
        #: The validated settings (``DEFAULT_QUEUE``, the worker's ``MAX_TRIES``...).
        self.settings: Mapping[str, Any] = {}
        self._default_queue = "notifycore"
        self._raise_errors = False
        self._lock = threading.RLock()
        self._hubs: dict[str, Hub] = {}
        #: The hubs an event is matched against, in creation order; replaced, never mutated.
        self.snapshot: tuple[Hub, ...] = ()
        self._loop_thread: LoopThread | None = None
        self._stats_lock = threading.Lock()
        self._stats: dict[str, int] = {"expired": 0, "failed": 0}
        #: Inboxes and preferences (``notifycore.inbox``), set by the entry object.
        self.centre: NotificationCentre | None = None

    def __repr__(self) -> str:
        return f"<Delivery backend={self._backend!r} hubs={list(self._hubs)}>"

    def configure(self, settings: Mapping[str, Any], backend: Backend) -> None:
        """Take new settings and a backend; every hub's consumers are bound to the backend
        (the caller closes the old one)."""
        with self._lock:
            self.settings = settings
            self._default_queue = settings["DEFAULT_QUEUE"]
            self._raise_errors = settings["CONSUMER_ERRORS"] == "raise"
            self._backend = backend
            for hub in self.snapshot:
                hub.use_backend(backend)

    @property
    def backend(self) -> Backend:
        """The backend jobs are enqueued on and consumers publish to."""
        backend = self._backend
        if backend is None:
            raise ConfigurationError("this delivery has no backend yet (configure() first)")
        return backend

    def close(self) -> None:
        """Close every consumer and the helper event loop (not the backend: its owner does)."""
        for hub in self.snapshot:
            for registration in hub.registrations:
                registration.consumer.close()
        if self._loop_thread is not None:
            self._loop_thread.close()
            self._loop_thread = None

    def awaitable(self) -> bool:
        """Whether ``asend()`` runs nothing that blocks its event loop: no hub filter calls the
        application's code, every hub's consumers are awaited or queued
        (:attr:`Registration.awaitable`) and no plugin implements a per-send hook
        synchronously. Inboxes and the backend's async face never block it. (The
        ``notifycore_consumer_error`` hook, which reports a failure, still runs in the loop,
        as logging does.)"""
        if self.plugins.sync_send_hooks:
            return False
        for hub in self.snapshot:
            if runs_app_code(hub.filter):  # a Predicate may look things up
                return False
            for registration in hub.registrations:
                if not registration.awaitable:
                    return False
        return True

    # -- hubs --------------------------------------------------------------------------------

    def create_hub(self, label: str) -> Hub:
        """A new hub, matched against events after the hubs created before it."""
        with self._lock:
            if label in self._hubs:
                raise ConfigurationError(f"a hub labelled {label!r} already exists")
            hub = Hub(label, self._backend)
            self._hubs[label] = hub
            self.snapshot = tuple(self._hubs.values())
        return hub

    def get_hub(self, label_or_id: str) -> Hub:
        """The hub with that label (or ``hub_id``); :class:`UnknownHub` otherwise."""
        hub = self._hubs.get(label_or_id)
        if hub is None and label_or_id.startswith(HUB_ID_PREFIX):
            hub = self._hubs.get(label_or_id[len(HUB_ID_PREFIX) :])
        if hub is None:
            raise UnknownHub(label_or_id)
        return hub

    def remove_hub(self, label_or_id: str) -> Hub:
        """Stop matching events against a hub; returns it."""
        with self._lock:
            hub = self.get_hub(label_or_id)
            del self._hubs[hub.label]
            self.snapshot = tuple(self._hubs.values())
        return hub

    @property
    def hubs(self) -> Mapping[str, Hub]:
        """The hubs by label (a read-only view)."""
        return MappingProxyType(self._hubs)

    def find_registration(self, hub: str, consumer: str) -> tuple[Hub, Registration]:
        """The hub and registration a queued job names; ``LookupError`` when gone."""
        found = self.get_hub(hub)
        try:
            return found, found.get_registration(consumer)
        except KeyError:
            raise LookupError(f"hub {hub!r} has no consumer named {consumer!r}") from None

    # -- counters ----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``expired`` events dropped, ``failed`` consumer runs."""
        with self._stats_lock:
            return dict(self._stats)

    def count(self, name: str, value: int = 1) -> None:
        """Add to a counter and report it through the ``notifycore_metric`` hook."""
        self.drive(self.counting(name, value))

    def counting(self, name: str, value: int = 1, *, aio: bool = False) -> Steps:
        """:meth:`count` in steps (``aio``: an async metric hook is awaited by :meth:`adrive`)."""
        with self._stats_lock:
            self._stats[name] = self._stats.get(name, 0) + value
        plugins = self.plugins
        if plugins.has_metric:
            if aio:
                yield plugins.ametric(f"events.{name}", value)
            else:
                plugins.metric(f"events.{name}", value)

    # -- driving steps -----------------------------------------------------------------------

    def drive(self, steps: Steps) -> None:
        """Run ``steps`` in this thread; what they yield runs on a helper event loop.

        An async consumer still running at its time limit is cancelled (its
        step fails with :class:`~notifycore.loop_thread.TimedOut`).
        """
        step = next(steps, _DONE)  # most often the steps end here: nothing to await
        if step is _DONE:
            return
        try:
            while True:
                try:
                    value = self._run_async(step)
                except BaseException as error:  # the steps decide what an error means
                    step = steps.throw(error)
                else:
                    step = steps.send(value)
        except StopIteration:
            return

    async def adrive(self, steps: Steps) -> None:
        """Run ``steps`` in the running event loop, awaiting what they yield."""
        step = next(steps, _DONE)
        if step is _DONE:
            return
        try:
            while True:
                try:
                    value = await step
                except BaseException as error:  # the steps decide what an error means
                    step = steps.throw(error)
                else:
                    step = steps.send(value)
        except StopIteration:
            return

    def _run_async(self, step: Awaitable[Any]) -> Any:
        if self._loop_thread is None:
            with self._lock:
                if self._loop_thread is None:
                    self._loop_thread = LoopThread()
        if isinstance(step, _Consume):
            return self._loop_thread.run(step.awaitable, step.timeout)
        return self._loop_thread.run(step)

    # -- routing -----------------------------------------------------------------------------

    def route(
        self, event: Event, result: SendResult, check: PreferenceCheck | None = None
    ) -> tuple[_Inline, _Queued, _Broken]:
        """Match hubs and sort their consumers into inline runs and queued jobs (nothing runs).

        Every consumer of a matched hub gets its outcome in ``result``, in
        order. A filter that raises fails its hub's consumers (or that one
        consumer): those come back as *broken*, to be reported. With ``check``
        (the recipients' preferences), a consumer gets the event with only the
        recipients who want it on that channel, and none (``opted_out``) when
        nobody does — before any job is made.
        """
        inline: _Inline = []
        queued: _Queued = {}
        broken: _Broken = []
        outcomes = result.outcomes
        add = outcomes.append
        expired = result.expired
        event_json: bytes | None = None
        for hub in self.snapshot:
            try:
                if not hub.filter.matches(event):
                    continue
            except Exception as error:  # a broken filter fails its hub, not the whole send
                error.add_note(f"raised by the filter of hub {hub.label!r}")
                for registration in hub.registrations:
                    add(ConsumerOutcome(hub.label, registration.name, _FAILED, error))
                    broken.append((hub, registration.name, error))
                continue
            label = hub.label
            result.hubs.append(label)
            for registration in hub.registrations:
                if expired:
                    add(ConsumerOutcome(label, registration.name, _EXPIRED))
                elif registration.filter is not None and not self._passes(
                    hub, registration, event, outcomes, broken
                ):
                    continue
                else:
                    own: Event | None = None
                    if check is not None:
                        wanted = check.recipients(event, label, registration.name)
                        if not wanted:
                            add(ConsumerOutcome(label, registration.name, Status.OPTED_OUT))
                            continue
                        if len(wanted) != len(set(event.recipients)):
                            own = event.replace(recipients=wanted)
                    if registration.mode == "inline":
                        outcome = ConsumerOutcome(label, registration.name, _RAN)
                        inline.append((hub, registration, outcome, own))
                        add(outcome)
                        continue
                    if own is not None:
                        own_json = own.to_json_bytes()
                    elif event_json is None:
                        own_json = event_json = event.to_json_bytes()
                    else:
                        own_json = event_json
                    outcome = ConsumerOutcome(label, registration.name, _ENQUEUED)
                    job = encode_job(label, registration.name, own_json)
                    queue = registration.queue or self._default_queue
                    queued.setdefault(queue, []).append((outcome, job))
                    add(outcome)
        return inline, queued, broken

    @staticmethod
    def _passes(
        hub: Hub,
        registration: Registration,
        event: Event,
        outcomes: list[ConsumerOutcome],
        broken: _Broken,
    ) -> bool:
        """Whether the consumer's own filter lets ``event`` through; records the outcome if not."""
        assert registration.filter is not None
        try:
            if registration.filter.matches(event):
                return True
        except Exception as error:
            error.add_note(f"raised by the filter of hub {hub.label!r}")
            outcomes.append(ConsumerOutcome(hub.label, registration.name, _FAILED, error))
            broken.append((hub, registration.name, error))
            return False
        outcomes.append(ConsumerOutcome(hub.label, registration.name, _FILTERED))
        return False

    # -- delivering --------------------------------------------------------------------------

    def sending(self, sender: Any, result: SendResult, *, aio: bool = False) -> Steps:
        """The send path in steps, for ``result.event`` (already checked): the
        ``before_send`` hook, matching (:meth:`route`), broken filters reported, inline
        consumers run, queued ones' jobs enqueued, the expired counted, the
        ``after_send`` hook, then the ``raise`` error policy; ``result`` is filled in.
        ``sender`` is the ``Notifications`` the send hooks are told of. With ``aio``,
        async consumers, hooks and the backend's async face are awaited (:meth:`adrive`)."""
        event = result.event
        plugins = self.plugins
        if plugins.has_before_send:
            if aio:
                yield plugins.abefore_send(sender, event)
            else:
                plugins.before_send(sender, event)
        expiration = event.expiration_datetime
        result.expired = expiration is not None and expiration <= _now(_utc)
        centre = self.centre
        check = None
        if centre is not None and event.recipients and centre.filtering:
            check = (
                (yield asyncio.to_thread(centre.allowed, event)) if aio else centre.allowed(event)
            )
        inline, queued, broken = self.route(event, result, check)
        if (
            centre is not None
            and centre.enabled
            and result.hubs
            and event.recipients
            and not result.expired
        ):
            # Kept before any consumer runs: a consumer (a digest) may ask about the item.
            if aio:
                yield asyncio.to_thread(centre.keep, event, check, self.backend, result.hubs)
            else:
                centre.keep(event, check, self.backend, result.hubs)
        for hub, name, broke in broken:
            yield from self.counting("failed", aio=aio)
            if aio:
                yield plugins.aconsumer_error(hub, name, event, broke)
            else:
                plugins.consumer_error(hub, name, event, broke)
        if inline:
            yield from self._consume(inline, event, None, aio, None)
        if queued:
            backend = self.backend
            for queue, jobs in queued.items():
                payloads = [job for _, job in jobs]
                ids = (
                    (yield backend.aenqueue_many(queue, payloads))
                    if aio
                    else backend.enqueue_many(queue, payloads)
                )
                for (outcome, _), job_id in zip(jobs, ids, strict=True):
                    outcome.job_id = job_id
        if result.expired:
            yield from self.counting("expired", aio=aio)
        if plugins.has_after_send:
            if aio:
                yield plugins.aafter_send(sender, event, result)
            else:
                plugins.after_send(sender, event, result)
        if self._raise_errors:
            errors = [o.error for o in result.outcomes if o.error is not None]
            if errors:
                raise ConsumerError(errors, result) from errors[0]

    def _consume(
        self,
        runs: Iterable[tuple[Hub, Registration, ConsumerOutcome, Event | None]],
        event: Event,
        done: Callable[[], object] | None,
        aio: bool,
        timeout: float | None,
    ) -> Steps:
        """Each consumer of ``runs`` gets ``event`` with its hooks, in turn (one generator
        for a whole send); the outcome of one that fails is marked failed.

        The order: the ``notifycore_before_consume`` hook, the consumer's
        ``before_consume``, ``consume`` (``aconsume`` when there is one and
        ``aio``), ``done`` (workers record de-duplication keys there), the
        consumer's ``after_consume``, the ``notifycore_after_consume`` hook.
        An error on the way is reported (:meth:`report`). An async consumer
        still running after ``timeout`` seconds is cancelled by :meth:`drive`:
        its error is a :class:`~notifycore.errors.ConsumerTimeout`.
        """
        plugins = self.plugins
        before, after = plugins.has_before_consume, plugins.has_after_consume
        shared = event
        for hub, registration, outcome, own in runs:
            event = shared if own is None else own
            consumer = registration.consumer
            try:
                if before:
                    if aio:
                        yield plugins.abefore_consume(hub, registration.name, event)
                    else:
                        plugins.before_consume(hub, registration.name, event)
                if registration.has_before:
                    consumer.before_consume(event)
                aconsume = registration.aconsume if aio else None
                returned = consumer.consume(event) if aconsume is None else aconsume(event)
                if returned is not None and inspect.isawaitable(returned):
                    try:
                        yield _Consume(returned, timeout)
                    except TimedOut:
                        assert timeout is not None
                        raise ConsumerTimeout(registration.name, hub.label, timeout) from None
                if done is not None:
                    done()
                if registration.has_after:
                    consumer.after_consume(event)
                if after:
                    if aio:
                        yield plugins.aafter_consume(hub, registration.name, event)
                    else:
                        plugins.after_consume(hub, registration.name, event)
            except (Exception, asyncio.CancelledError) as error:
                if isinstance(error, asyncio.CancelledError) and aio and _cancelling():
                    raise  # the send itself is cancelled: no consumer failed
                # Else a consumer's own await was cancelled: it failed, as under send().
                outcome.status, outcome.error = Status.FAILED, error
                yield from self.report(hub, registration, event, error, aio=aio)

    def run(
        self,
        hub: Hub,
        registration: Registration,
        event: Event,
        done: Callable[[], object] | None = None,
        *,
        timeout: float | None = None,
    ) -> BaseException | None:
        """Run one consumer on ``event`` with its hooks (as a send does); return the error
        it raised, if any. ``done`` runs as soon as the consumer returned, before the
        after-hooks (workers record de-duplication keys there).

        An async consumer still running after ``timeout`` seconds is cancelled
        and the error is a :class:`~notifycore.errors.ConsumerTimeout` (a sync
        one cannot be stopped from here: the worker watches those).
        """
        outcome = ConsumerOutcome(hub.label, registration.name, Status.RAN)
        self.drive(
            self._consume(((hub, registration, outcome, None),), event, done, False, timeout)
        )
        return outcome.error

    def report_error(
        self, hub: Hub, registration: Registration, event: Event, error: BaseException
    ) -> None:
        """Tell a consumer's ``on_error``, the ``notifycore_consumer_error`` hook and the
        ``failed`` counter that it failed on ``event`` (a worker reports timeouts here)."""
        self.drive(self.report(hub, registration, event, error))

    def report(
        self,
        hub: Hub,
        registration: Registration,
        event: Event,
        error: BaseException,
        *,
        aio: bool = False,
    ) -> Steps:
        """:meth:`report_error` in steps (``aio``: async hooks are awaited by :meth:`adrive`)."""
        try:
            registration.consumer.on_error(event, error)
        except Exception as hook_error:  # the report must go on; keep both errors
            error.add_note(f"{registration.name}.on_error raised {hook_error!r}")
        yield from self.counting("failed", aio=aio)
        if aio:
            yield self.plugins.aconsumer_error(hub, registration.name, event, error)
        else:
            self.plugins.consumer_error(hub, registration.name, event, error)
