"""``Notifications``: the settings, the backend, the hubs, and ``send()``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from notifycore import drivers
from notifycore.backends.base import Backend
from notifycore.config import load_config
from notifycore.declarations import Declarations, parse_declarations
from notifycore.delivery import Delivery
from notifycore.errors import ConfigurationError, InvalidEvent
from notifycore.event import Event
from notifycore.fanout import Fanout
from notifycore.hub import Hub
from notifycore.inbox import Inbox, NotificationCentre
from notifycore.listeners import LoadedHubs, load_hubs
from notifycore.plugins import get_plugins
from notifycore.result import SendResult
from notifycore.settings import Settings, collect_settings
from notifycore.worker import Worker

__all__ = ["Notifications"]

EventLike = Event | Mapping[str, Any] | str | bytes


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
        #: Routing and running consumers: what ``send()`` and workers share.
        self.delivery = Delivery(self.plugins)
        #: Inboxes and preferences (docs/inbox.md); the delivery keeps and filters through it.
        self.centre = NotificationCentre(self.plugins)
        self.delivery.centre = self.centre
        self._environ = environ
        self._lock = threading.RLock()
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
        return f"<Notifications backend={self._backend!r} hubs={list(self.hubs)}>"

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
        made = backend is None
        if backend is None:
            backend = self._make_backend(settings)
        elif not isinstance(backend, Backend):
            raise ConfigurationError(
                f"backend must be a Backend instance, not {type(backend).__name__}"
            )
        try:
            self.centre.configure(settings, backend)
        except BaseException:
            if made and backend is not settings["BACKEND"]:
                backend.close()  # made here and never used
            raise
        old, self._backend = self._backend, backend
        self.settings = settings
        self._max_event_size: int = settings["MAX_EVENT_SIZE"]
        self._max_event_depth: int = settings["MAX_EVENT_DEPTH"]
        self.delivery.configure(settings, backend)
        if old is not None and old is not backend:
            if self._fanout is not None:  # its followers read the old backend
                self._fanout.close()
                self._fanout = None
            old.close()
        self.declarations = declarations
        if loaded is not None:
            self._install(loaded)

    def _install(self, loaded: LoadedHubs) -> None:
        """Replace the hubs an earlier configuration declared with the loaded ones."""
        replaced, self._declared_hubs = self._declared_hubs, []
        self._remove_hubs(replaced)
        built: list[Hub] = []
        try:
            for hub_spec, consumers in loaded:
                hub = self.create_hub(hub_spec.label).filter_by(hub_spec.filter)
                built.append(hub)
                for listener, consumer in consumers:
                    hub.register_consumer(
                        consumer,
                        name=listener.name,
                        mode=listener.mode,
                        filter=listener.filter,
                        queue=listener.queue,
                        max_tries=listener.max_tries,
                        dedupe=listener.dedupe,
                        timeout=listener.timeout,
                    )
        except BaseException:
            self._remove_hubs([hub.label for hub in built])
            raise
        self._declared_hubs = [hub.label for hub in built]

    def _remove_hubs(self, labels: Iterable[str]) -> None:
        """Remove hubs (those built from an earlier configuration) and close their consumers."""
        for label in labels:
            if label in self.hubs:
                for registration in self.remove_hub(label).registrations:
                    registration.consumer.close()

    @staticmethod
    def backend_class(spec: str | type) -> type[Backend]:
        """The :class:`Backend` class that a ``BACKEND`` setting names (an entry-point name,
        ``pkg.mod:Class``, or the class); :class:`ConfigurationError` for anything else."""
        cls = drivers.resolve(drivers.BACKENDS, spec)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise ConfigurationError(
                f"BACKEND {spec!r} names {cls!r}, which is not a Backend class"
            )
        return cls

    @classmethod
    def _make_backend(cls, settings: Settings) -> Backend:
        spec = settings["BACKEND"]
        if isinstance(spec, Backend):
            return spec
        return cls.backend_class(spec).from_settings(settings)

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
        self.delivery.close()
        self.centre.close()
        if self._backend is not None:
            self._backend.close()

    # -- hubs --------------------------------------------------------------------------------

    def create_hub(self, label: str) -> Hub:
        """A new hub; its ``hub_id`` is ``"event-hub-" + label``."""
        return self.delivery.create_hub(label)

    def get_hub(self, label_or_id: str) -> Hub:
        """The hub with that label (or ``hub_id``); :class:`UnknownHub` otherwise."""
        return self.delivery.get_hub(label_or_id)

    @property
    def hubs(self) -> Mapping[str, Hub]:
        """The hubs by label (a read-only view)."""
        return self.delivery.hubs

    def remove_hub(self, label_or_id: str) -> Hub:
        """Remove a hub; events sent afterwards no longer reach its consumers."""
        return self.delivery.remove_hub(label_or_id)

    # -- the notification centre -------------------------------------------------------------

    def inbox(self, user: str) -> Inbox:
        """``user``'s inbox: ``list(before=, limit=)``, ``unread_count()``, ``mark_read(ids)``,
        ``mark_all_read(up_to=)``, ``archive(ids)``... (docs/inbox.md). A
        :class:`ConfigurationError` when no inboxes are kept (``INBOX``, ``INBOX_BACKEND``)."""
        return self.centre.inbox(user, self.backend)

    def preferences(self, user: str) -> dict[str, dict[str, bool]]:
        """``user``'s own notification preferences, ``{topic: {channel: bool}}`` (docs/inbox.md)."""
        return self.centre.preferences(user)

    def set_preferences(self, user: str, preferences: Any) -> dict[str, dict[str, bool]]:
        """Replace ``user``'s preferences (checked: :class:`InvalidPreferences` when malformed)."""
        return self.centre.set_preferences(user, preferences)

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
            self._worker = Worker(self.delivery, queues, concurrency=concurrency).start()
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
        return self.delivery.stats

    def count(self, name: str, value: int = 1) -> None:
        """Add to a counter and report it through the ``notifycore_metric`` hook."""
        self.delivery.count(name, value)

    # -- sending -----------------------------------------------------------------------------

    def coerce_event(self, event: EventLike) -> Event:
        """An :class:`Event` from an Event, its dict or its JSON, checked against the limits."""
        if isinstance(event, Event):
            event.check_limits(self._max_event_size, self._max_event_depth)
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

    def send(self, event: EventLike) -> SendResult:
        """Match the event against every hub and deliver it to their consumers.

        Takes an :class:`Event`, its dict or its JSON. Inline consumers run
        here, one failure never stopping the others; queued ones get a job on
        the backend. Returns what happened to each consumer.
        """
        result = SendResult(self.coerce_event(event))
        delivery = self.delivery
        delivery.drive(delivery.sending(self, result))
        return result

    async def asend(self, event: EventLike) -> SendResult:
        """:meth:`send` for async code: awaits async consumers and the backend's async face."""
        result = SendResult(self.coerce_event(event))
        delivery = self.delivery
        await delivery.adrive(delivery.sending(self, result, aio=True))
        return result

    def send_many(self, events: Iterable[EventLike]) -> list[SendResult]:
        """:meth:`send` for each event, in order."""
        return [self.send(event) for event in events]
