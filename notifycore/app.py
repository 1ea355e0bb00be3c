"""``Notifications``: the settings, the backend, the hubs, and ``send()``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from notifycore import drivers
from notifycore.backends.base import Backend
from notifycore.config import Setting, Settings, load_config
from notifycore.errors import (
    ConfigurationError,
    ConsumerError,
    ConsumerTimeout,
    InvalidEvent,
    UnknownHub,
)
from notifycore.event import Event
from notifycore.fanout import Fanout
from notifycore.hub import HUB_ID_PREFIX, Hub, Registration
from notifycore.jobs import encode_job
from notifycore.listeners import (
    Declarations,
    LoadedHubs,
    install_hubs,
    load_hubs,
    parse_declarations,
)
from notifycore.plugins import Plugins, get_plugins
from notifycore.result import ConsumerOutcome, SendResult, Status
from notifycore.worker import Worker

__all__ = ["Notifications", "collect_settings"]

_utc = UTC
_now = datetime.now
EventLike = Event | Mapping[str, Any] | str | bytes


def collect_settings(plugins: Plugins) -> dict[str, Setting]:
    """Every setting declared by the registered plugins, by name."""
    declared: dict[str, Setting] = {}

    def register(setting: Setting) -> None:
        if not isinstance(setting, Setting):
            raise ConfigurationError(f"notifycore_register_settings got {setting!r}, not a Setting")
        if setting.name in declared and declared[setting.name] != setting:
            raise ConfigurationError(f"setting {setting.name!r} is declared twice, differently")
        declared[setting.name] = setting

    plugins.register_settings(register)
    return declared


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _TimedOut(Exception):
    """A coroutine run by :class:`_LoopThread` was cancelled at its time limit."""


class _LoopThread:
    """An event loop in a daemon thread, for async consumers reached from sync ``send()``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="notifycore-async", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        """Run ``coro`` on the loop; past ``timeout`` seconds it is cancelled (``_TimedOut``)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if timeout is None:
            return future.result()
        finished, _ = concurrent.futures.wait([future], timeout)
        if not finished and future.cancel():
            raise _TimedOut
        return future.result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class Notifications:
    """The entry point: ``Notifications(app=None, *, config=None, config_prefix="")``.

    ``config`` is a mapping of settings (``BACKEND``, ``BACKEND_URL``...), a
    Flask config, or the path of a TOML, INI or JSON file (see
    :func:`~notifycore.config.load_config`); with ``config_prefix`` only the
    mapping's keys with that prefix are read. ``NOTIFYCORE_<KEY>`` environment
    variables override it. Hubs and listeners it declares (``HUBS``,
    ``LISTENERS``) are created once the plugins were told of the new object.
    With ``app``, an installed web adapter plugin binds to it (``init_app``).
    """

    def __init__(
        self,
        app: Any = None,
        *,
        config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        config_prefix: str = "",
        backend: Backend | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.plugins = get_plugins()
        self._environ = environ
        self._hubs: dict[str, Hub] = {}
        self._hub_list: tuple[Hub, ...] = ()
        self._lock = threading.RLock()
        self._loop_thread: _LoopThread | None = None
        self._stats_lock = threading.Lock()
        self._stats: dict[str, int] = {"expired": 0, "failed": 0}
        self._backend: Backend | None = None
        self._worker: Worker | None = None
        self._fanout: Fanout | None = None
        #: The hubs and listeners the configuration declares (built by :meth:`configure`).
        self.declarations = Declarations()
        self._declared_hubs: list[str] = []
        self._ready = False  # declared hubs wait until the plugins were told of this object
        self._source = os.fspath(config) if isinstance(config, (str, os.PathLike)) else None
        #: The configuration given to the constructor; adapters add the app's settings to it.
        self.config: dict[str, Any] = load_config(config, prefix=config_prefix)
        if app is None:
            self.configure(self.config, backend=backend)
        else:
            # The app's own configuration comes with init_app: build no backend before it.
            self.settings = self._settings(self.config)
        self.plugins.notifications_created(self)
        self._ready = True
        if app is not None:
            self.init_app(app)
        if self._backend is None:
            self.configure(self.config, backend=backend)
        elif not self._declared_hubs:
            self._install(load_hubs(self, self.declarations))

    def __repr__(self) -> str:
        return f"<Notifications backend={self._backend!r} hubs={list(self._hubs)}>"

    # -- configuration -----------------------------------------------------------------------

    def _settings(self, config: Mapping[str, Any]) -> Settings:
        source = f"configuration file {self._source}" if self._source else "configuration"
        return Settings(
            collect_settings(self.plugins), load_config(config), self._environ, source=source
        )

    def configure(self, config: Mapping[str, Any], *, backend: Backend | None = None) -> None:
        """(Re)read settings, (re)build the backend and the declared hubs and listeners.

        Web adapters call it from ``init_app``. Hubs an earlier configuration
        declared are replaced; hubs created in code stay.
        """
        settings = self._settings(config)
        declarations = parse_declarations(settings["HUBS"], settings["LISTENERS"])
        # Listeners load before anything changes: one that fails leaves the old state whole.
        loaded = (
            load_hubs(self, declarations, settings=settings, replace=self._declared_hubs)
            if self._ready
            else None
        )
        if backend is None:
            backend = self._make_backend(settings)
        elif not isinstance(backend, Backend):
            raise ConfigurationError(
                f"backend must be a Backend instance, not {type(backend).__name__}"
            )
        old, self._backend = self._backend, backend
        self.settings = settings
        self._max_event_size: int = settings["MAX_EVENT_SIZE"]
        self._max_event_depth: int = settings["MAX_EVENT_DEPTH"]
        self._raise_errors = settings["CONSUMER_ERRORS"] == "raise"
        self._default_queue: str = settings["DEFAULT_QUEUE"]
        if old is not None and old is not backend:
            if self._fanout is not None:  # its followers read the old backend
                self._fanout.close()
                self._fanout = None
            old.close()
        self.declarations = declarations
        if loaded is not None:
            self._install(loaded)

    def _install(self, loaded: LoadedHubs) -> None:
        replaced, self._declared_hubs = self._declared_hubs, []
        self._declared_hubs = [h.label for h in install_hubs(self, loaded, replace=replaced)]

    @staticmethod
    def _make_backend(settings: Settings) -> Backend:
        spec = settings["BACKEND"]
        if isinstance(spec, Backend):
            return spec
        cls = drivers.resolve(drivers.BACKENDS, spec)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise ConfigurationError(
                f"BACKEND {spec!r} names {cls!r}, which is not a Backend class"
            )
        return cls.from_settings(settings)

    @property
    def backend(self) -> Backend:
        """The backend chosen by the ``BACKEND`` setting."""
        assert self._backend is not None
        return self._backend

    def init_app(self, app: Any) -> None:
        """Bind to a web application through the first adapter plugin that understands it."""
        if not self.plugins.init_app(self, app):
            raise ConfigurationError(
                f"no installed plugin can bind notifications to {type(app).__module__}."
                f"{type(app).__qualname__}; install notify-flask or notify-starlette"
            )

    @property
    def fanout(self) -> Fanout:
        """The process's shared stream followers (web adapters subscribe browsers here)."""
        if self._fanout is None:
            with self._lock:
                if self._fanout is None:
                    self._fanout = Fanout(self.backend)
        return self._fanout

    def close(self) -> None:
        """Stop the worker and the stream followers; close consumers, helper thread and backend."""
        self.stop_worker()
        if self._fanout is not None:
            self._fanout.close()
            self._fanout = None
        for hub in self._hub_list:
            for registration in hub.registrations:
                registration.consumer.close()
        if self._loop_thread is not None:
            self._loop_thread.close()
            self._loop_thread = None
        if self._backend is not None:
            self._backend.close()

    # -- hubs --------------------------------------------------------------------------------

    def create_hub(self, label: str) -> Hub:
        """A new hub; its ``hub_id`` is ``"event-hub-" + label``."""
        with self._lock:
            if label in self._hubs:
                raise ConfigurationError(f"a hub labelled {label!r} already exists")
            hub = Hub(self, label)
            self._hubs[label] = hub
            self._hub_list = tuple(self._hubs.values())
        return hub

    def get_hub(self, label_or_id: str) -> Hub:
        """The hub with that label (or ``hub_id``); :class:`UnknownHub` otherwise."""
        hub = self._hubs.get(label_or_id)
        if hub is None and label_or_id.startswith(HUB_ID_PREFIX):
            hub = self._hubs.get(label_or_id[len(HUB_ID_PREFIX) :])
        if hub is None:
            raise UnknownHub(label_or_id)
        return hub

    @property
    def hubs(self) -> Mapping[str, Hub]:
        """The hubs by label (a read-only view)."""
        return MappingProxyType(self._hubs)

    def remove_hub(self, label_or_id: str) -> Hub:
        """Remove a hub; events sent afterwards no longer reach its consumers."""
        with self._lock:
            hub = self.get_hub(label_or_id)
            del self._hubs[hub.label]
            self._hub_list = tuple(self._hubs.values())
        return hub

    def find_registration(self, hub: str, consumer: str) -> tuple[Hub, Registration]:
        """The hub and registration a queued job names; ``LookupError`` when gone."""
        found = self.get_hub(hub)
        try:
            return found, found.get_registration(consumer)
        except KeyError:
            raise LookupError(f"hub {hub!r} has no consumer named {consumer!r}") from None

    # -- background worker -------------------------------------------------------------------

    def start_worker(self, *, concurrency: int = 1, queues: Iterable[str] | None = None) -> Worker:
        """Run queued jobs in background threads of this process (single-process deployments).

        ``notifycore worker --app module:notifications`` is the same worker as a
        separate process. Call :meth:`stop_worker` (or :meth:`close`) to stop it.
        """
        with self._lock:
            if self._worker is not None:
                raise ConfigurationError(
                    "a background worker is already running; stop_worker() first"
                )
            self._worker = Worker(self, queues, concurrency=concurrency).start()
            return self._worker

    def stop_worker(self, timeout: float | None = None) -> None:
        """Stop the background worker: no new jobs; the ones in flight may finish for
        ``timeout`` seconds (default: ``WORKER_GRACE_PERIOD``), then go back to the queue."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout)

    @property
    def worker(self) -> Worker | None:
        """The background worker started by :meth:`start_worker`, if any."""
        return self._worker

    # -- statistics --------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``expired`` events dropped, ``failed`` consumer runs."""
        with self._stats_lock:
            return dict(self._stats)

    def count(self, name: str, value: int = 1) -> None:
        """Add to a counter and report it through the ``notifycore_metric`` hook."""
        with self._stats_lock:
            self._stats[name] = self._stats.get(name, 0) + value
        self.plugins.metric(f"events.{name}", value)

    # -- sending -----------------------------------------------------------------------------

    def coerce_event(self, event: EventLike) -> Event:
        """An :class:`Event` from an Event, its dict or its JSON, checked against the limits."""
        if isinstance(event, Event):
            event.check_depth(self._max_event_depth)
            event.check_size(self._max_event_size)
            return event
        if isinstance(event, (str, bytes, bytearray)):
            return Event.from_json(
                bytes(event) if isinstance(event, bytearray) else event,
                max_size=self._max_event_size,
                max_depth=self._max_event_depth,
            )
        if isinstance(event, Mapping):
            parsed = Event.from_dict(event, max_depth=self._max_event_depth)
            parsed.check_size(self._max_event_size)
            return parsed
        raise InvalidEvent(
            "event", f"send() takes an Event, a dict or JSON, not {type(event).__name__}"
        )

    def _run_async(self, awaitable: Awaitable[Any], timeout: float | None = None) -> Any:
        coro = awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        if self._loop_thread is None:
            with self._lock:
                if self._loop_thread is None:
                    self._loop_thread = _LoopThread()
        return self._loop_thread.run(coro, timeout)

    def _before(self, hub: Hub, registration: Registration, event: Event) -> None:
        if self.plugins.has_before_consume:
            self.plugins.before_consume(hub, registration.name, event)
        if registration.has_before:
            registration.consumer.before_consume(event)

    def _after(self, hub: Hub, registration: Registration, event: Event) -> None:
        if registration.has_after:
            registration.consumer.after_consume(event)
        if self.plugins.has_after_consume:
            self.plugins.after_consume(hub, registration.name, event)

    def run_consumer(
        self,
        hub: Hub,
        registration: Registration,
        event: Event,
        done: Callable[[], object] | None = None,
        *,
        timeout: float | None = None,
    ) -> BaseException | None:
        """Deliver ``event`` to one consumer with its hooks; return the error it raised, if any.

        ``done`` runs as soon as the consumer returned, before the after-hooks
        (workers record de-duplication keys there). An async consumer still
        running after ``timeout`` seconds is cancelled and the error is a
        :class:`~notifycore.errors.ConsumerTimeout` (a sync one cannot be
        stopped from here: the worker watches those).
        """
        try:
            self._before(hub, registration, event)
            if registration.is_async:
                self._await_consumer(
                    registration.consumer.consume(event), hub, registration, timeout
                )
            else:
                returned = registration.consumer.consume(event)
                if returned is not None and inspect.isawaitable(returned):
                    # a callable that returned a coroutine after all
                    self._await_consumer(returned, hub, registration, timeout)
            if done is not None:
                done()
            self._after(hub, registration, event)
        except Exception as error:
            self.report_error(hub, registration, event, error)
            return error
        return None

    def _await_consumer(
        self,
        awaitable: Awaitable[Any],
        hub: Hub,
        registration: Registration,
        timeout: float | None,
    ) -> None:
        try:
            self._run_async(awaitable, timeout)
        except _TimedOut:
            assert timeout is not None
            raise ConsumerTimeout(registration.name, hub.label, timeout) from None

    async def arun_consumer(
        self, hub: Hub, registration: Registration, event: Event
    ) -> BaseException | None:
        """:meth:`run_consumer` for async code: coroutine consumers are awaited in this loop."""
        consumer = registration.consumer
        try:
            self._before(hub, registration, event)
            aconsume = getattr(consumer, "aconsume", None)
            if aconsume is not None:
                await aconsume(event)
            elif registration.is_async:
                await consumer.consume(event)
            else:
                returned = consumer.consume(event)
                if returned is not None and inspect.isawaitable(returned):
                    await returned
            self._after(hub, registration, event)
        except Exception as error:
            self.report_error(hub, registration, event, error)
            return error
        return None

    def report_error(
        self, hub: Hub, registration: Registration, event: Event, error: BaseException
    ) -> None:
        """Tell a consumer's ``on_error``, the ``notifycore_consumer_error`` hook and the
        ``failed`` counter that it failed on ``event`` (a worker reports timeouts here)."""
        try:
            registration.consumer.on_error(event, error)
        except Exception as hook_error:  # the report must go on; keep both errors
            error.add_note(f"{registration.name}.on_error raised {hook_error!r}")
        self.count("failed")
        self.plugins.consumer_error(hub, registration.name, event, error)

    def _route(
        self, event: Event, result: SendResult
    ) -> tuple[
        list[tuple[Hub, Registration, ConsumerOutcome]],
        dict[str, list[tuple[ConsumerOutcome, bytes]]],
    ]:
        """Match hubs and sort consumers into inline runs and queued jobs (no delivery yet)."""
        inline: list[tuple[Hub, Registration, ConsumerOutcome]] = []
        queued: dict[str, list[tuple[ConsumerOutcome, bytes]]] = {}
        expired = result.expired
        event_json: bytes | None = None
        default_queue = self._default_queue
        for hub in self._hub_list:
            try:
                if not hub.filter.matches(event):
                    continue
            except Exception as error:  # a broken filter fails its hub, not the whole send
                self._filter_failed(hub, None, event, error, result)
                continue
            result.hubs.append(hub.label)
            for registration in hub.registrations:
                if expired:
                    status = Status.EXPIRED
                elif registration.filter is not None and not self._passes(
                    hub, registration, event, result
                ):
                    status = Status.FILTERED
                elif registration.mode == "inline":
                    outcome = ConsumerOutcome(hub.label, registration.name, Status.RAN)
                    inline.append((hub, registration, outcome))
                    result.outcomes.append(outcome)
                    continue
                else:
                    if event_json is None:
                        event_json = event.to_json_bytes()
                    outcome = ConsumerOutcome(hub.label, registration.name, Status.ENQUEUED)
                    job = encode_job(hub.label, registration.name, event_json)
                    queued.setdefault(registration.queue or default_queue, []).append(
                        (outcome, job)
                    )
                    result.outcomes.append(outcome)
                    continue
                result.outcomes.append(ConsumerOutcome(hub.label, registration.name, status))
        return inline, queued

    def _passes(
        self, hub: Hub, registration: Registration, event: Event, result: SendResult
    ) -> bool:
        assert registration.filter is not None
        try:
            return registration.filter.matches(event)
        except Exception as error:
            self._filter_failed(hub, registration, event, error, result)
            return False

    def _filter_failed(
        self,
        hub: Hub,
        registration: Registration | None,
        event: Event,
        error: Exception,
        result: SendResult,
    ) -> None:
        """A filter raised: its hub's consumers (or that one consumer) fail with the error."""
        error.add_note(f"raised by the filter of hub {hub.label!r}")
        for each in (registration,) if registration is not None else hub.registrations:
            result.outcomes.append(ConsumerOutcome(hub.label, each.name, Status.FAILED, error))
            self.count("failed")
            self.plugins.consumer_error(hub, each.name, event, error)

    def _start(self, event: EventLike) -> SendResult:
        checked = self.coerce_event(event)
        if self.plugins.has_before_send:
            self.plugins.before_send(self, checked)
        expiration = checked.expiration_datetime
        return SendResult(checked, expired=expiration is not None and expiration <= _now(_utc))

    def _finish(self, result: SendResult) -> SendResult:
        if result.expired:
            self.count("expired")
        if self.plugins.has_after_send:
            self.plugins.after_send(self, result.event, result)
        if self._raise_errors:
            errors = [o.error for o in result.outcomes if o.error is not None]
            if errors:
                raise ConsumerError(errors, result) from errors[0]
        return result

    def send(self, event: EventLike) -> SendResult:
        """Match the event against every hub and deliver it to their consumers.

        Takes an :class:`Event`, its dict or its JSON. Inline consumers run
        here, one failure never stopping the others; queued ones get a job on
        the backend. Returns what happened to each consumer.
        """
        result = self._start(event)
        inline, queued = self._route(result.event, result)
        for hub, registration, outcome in inline:
            error = self.run_consumer(hub, registration, result.event)
            if error is not None:
                outcome.status, outcome.error = Status.FAILED, error
        for queue, jobs in queued.items():
            ids = self.backend.enqueue_many(queue, [job for _, job in jobs])
            for (outcome, _), job_id in zip(jobs, ids, strict=True):
                outcome.job_id = job_id
        return self._finish(result)

    async def asend(self, event: EventLike) -> SendResult:
        """:meth:`send` for async code: awaits async consumers and the backend's async face."""
        result = self._start(event)
        inline, queued = self._route(result.event, result)
        for hub, registration, outcome in inline:
            error = await self.arun_consumer(hub, registration, result.event)
            if error is not None:
                outcome.status, outcome.error = Status.FAILED, error
        for queue, jobs in queued.items():
            ids = await self.backend.aenqueue_many(queue, [job for _, job in jobs])
            for (outcome, _), job_id in zip(jobs, ids, strict=True):
                outcome.job_id = job_id
        return self._finish(result)

    def send_many(self, events: Iterable[EventLike]) -> list[SendResult]:
        """:meth:`send` for each event, in order."""
        return [self.send(event) for event in events]
