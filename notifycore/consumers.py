"""Consumers: what a hub hands matching events to.

:class:`Consumer` is the base class (``consume`` plus the ``before_consume``,
``after_consume`` and ``on_error`` hooks); plain functions, sync or
``async def``, are wrapped in :class:`FunctionConsumer`. The built-in
:class:`LogConsumer` writes JSON Lines and :class:`PushConsumer` publishes to
the hub's stream for browsers and ``notifycore tail``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from notifycore.backends.base import Backend
from notifycore.errors import ConfigurationError
from notifycore.event import Event

if TYPE_CHECKING:
    from notifycore.hub import Hub
    from notifycore.listeners import ListenerConfig

__all__ = [
    "Binding",
    "Consumer",
    "FunctionConsumer",
    "LogConsumer",
    "PushConsumer",
    "default_name",
    "user_stream",
]


def user_stream(user_id: str) -> str:
    """The name of the per-user stream that :class:`PushConsumer` can publish to."""
    return f"user:{user_id}"


def default_name(obj: object) -> str:
    """The qualified name a consumer is registered under when none is given."""
    if isinstance(obj, FunctionConsumer):
        obj = obj.function
    target = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}"


@dataclass(frozen=True, slots=True)
class Binding:
    """What a consumer is given when it is registered: its hub, and the backend in use.

    :meth:`Consumer.bind` receives it once the hub has a backend, and again
    (with the same hub) whenever the backend is replaced (``configure()``).
    """

    hub: Hub
    #: The backend events are published to and jobs enqueued on.
    backend: Backend


class Consumer:
    """Base class: override :meth:`consume` (sync or ``async def``).

    The hooks run around each delivery: ``before_consume`` and
    ``after_consume`` (only when ``consume`` succeeded) and ``on_error``
    (when it raised; the error is still reported and counted).
    """

    #: Default registration name; None means the qualified class name.
    name: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **options: Any) -> Self:
        """The consumer built from validated settings, ``options`` winning over them.

        The one path by which settings reach a consumer, however it is chosen:
        code calls ``MyConsumer.from_settings(notifications.settings, ...)``,
        and a listener declared with ``use = "<entry point>"`` or
        ``use = "pkg.mod:MyConsumer"`` is built by
        ``MyConsumer.from_settings(settings, **its_keys)`` (unless the class
        offers Kinto's ``load_from_config``). This default ignores the
        settings: ``cls(**options)``. A plugin overrides it to read its own
        keys (``options.setdefault("path", settings["SINK_PATH"])``).
        """
        return cls(**options)

    def consume(self, event: Event) -> Any:
        """Handle one event."""
        raise NotImplementedError(f"{type(self).__name__} must implement consume(event)")

    def __call__(self, event: Event | str | bytes | Mapping[str, Any]) -> Any:
        """Deliver one event by hand, hooks included: ``consumer(event)`` or ``consumer(event_json)``.

        Flask-Notifications' way of calling a consumer: ``before_consume``,
        :meth:`consume`, then ``after_consume`` (``on_error`` when it raised,
        and the error is raised again). The event may be an :class:`Event`,
        its JSON or a dict. No hub, worker or hook of a plugin takes part:
        ``notifications.send(event)`` is the way events are normally delivered.
        An ``async def`` consumer is awaited instead: ``await consumer.consume(event)``.
        """
        if is_async(self):
            raise TypeError(
                f"{type(self).__name__}.consume is async: await consumer.consume(event), "
                "or send the event through notifications.send()"
            )
        if isinstance(event, (str, bytes)):
            event = Event.from_json(event)
        elif not isinstance(event, Event):
            event = Event.from_dict(event)
        try:
            self.before_consume(event)
            result = self.consume(event)
        except Exception as error:
            self.on_error(event, error)
            raise
        self.after_consume(event)
        return result

    def before_consume(self, event: Event) -> None:
        """Called before :meth:`consume`."""

    def after_consume(self, event: Event) -> None:
        """Called after :meth:`consume` returned without error."""

    def on_error(self, event: Event, error: BaseException) -> None:
        """Called when :meth:`consume` (or ``before_consume``) raised ``error``."""

    def bind(self, binding: Binding) -> None:
        """Called when the consumer is registered on ``binding.hub`` (see :class:`Binding`)."""

    def unbind(self, binding: Binding) -> None:
        """Called when the consumer is removed from ``binding.hub``."""

    def close(self) -> None:
        """Release files or connections the consumer holds."""


class FunctionConsumer(Consumer):
    """A plain function (or ``async def``) used as a consumer."""

    def __init__(self, function: Callable[[Event], Any]) -> None:
        if not callable(function):
            raise TypeError(f"a consumer must be callable, not {type(function).__name__}")
        self.function = function
        self.consume = function  # type: ignore[method-assign,assignment]

    def __repr__(self) -> str:
        return f"FunctionConsumer({default_name(self.function)})"

    @classmethod
    def load_from_config(cls, config: ListenerConfig, prefix: str) -> FunctionConsumer:
        """Kinto's contract: ``function = "pkg.mod:func"`` names the function to call."""
        from notifycore import drivers  # only configuration needs it

        path = config.get_str(prefix + "function")
        if path is None:
            raise ConfigurationError(f"{prefix}function is required (pkg.mod:func)")
        function = (
            drivers.resolve(drivers.CONSUMERS, path) if ("." in path or ":" in path) else None
        )
        if function is None or isinstance(function, type) or not callable(function):
            raise ConfigurationError(
                f"{prefix}function must name a function as pkg.mod:func, not {path!r}"
            )
        return cls(function)


class LogConsumer(Consumer):
    """Writes each event as one line of JSON to a file path or a :class:`logging.Logger`.

    A file is opened in append mode and written a whole line at a time, so
    several processes can share it.
    """

    def __init__(
        self, target: str | os.PathLike[str] | logging.Logger, *, level: int = logging.INFO
    ) -> None:
        self.level = level
        self._lock = threading.Lock()
        self._file: Any = None
        if isinstance(target, logging.Logger):
            self.logger: logging.Logger | None = target
            self.path: str | None = None
        elif isinstance(target, (str, os.PathLike)):
            self.logger = None
            self.path = os.fspath(target)
        else:
            raise TypeError(
                f"LogConsumer writes to a path or a Logger, not {type(target).__name__}"
            )

    def __repr__(self) -> str:
        return f"LogConsumer({self.path or self.logger!r})"

    @classmethod
    def load_from_config(cls, config: ListenerConfig, prefix: str) -> LogConsumer:
        """Kinto's contract: ``path`` (a file) or ``logger`` (a logger name), and ``level``."""
        path = config.get_str(prefix + "path")
        logger = config.get_str(prefix + "logger")
        if (path is None) == (logger is None):
            raise ConfigurationError(
                f"{prefix}path (a JSON Lines file) or {prefix}logger (a logger name) is "
                "required, not both"
            )
        level_text = config.get(prefix + "level", "INFO")
        level = level_text
        if isinstance(level_text, str):
            level = logging.getLevelNamesMapping().get(level_text.strip().upper())
        if not isinstance(level, int) or isinstance(level, bool):
            names = ", ".join(
                n for n in logging.getLevelNamesMapping() if n not in ("WARN", "FATAL")
            )
            raise ConfigurationError(
                f"{prefix}level must be a level name ({names}) or an int, not {level_text!r}"
            )
        return cls(path if path is not None else logging.getLogger(logger), level=level)

    def consume(self, event: Event) -> None:
        line = event.to_json()
        if self.logger is not None:
            self.logger.log(self.level, line)
            return
        with self._lock:
            if self._file is None:
                assert self.path is not None
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class PushConsumer(Consumer):
    """Publishes events for browsers: public ones to the hub's stream, private ones to their recipients.

    An event without recipients is public: it goes to the hub's stream, named
    after its ``hub_id`` (unless ``hub_stream=False``). An event with
    recipients is private: it goes to ``user:<r>`` for each recipient ``r``
    (see :func:`user_stream`; ``per_recipient``, on by default) and to the
    hub's stream only with ``broadcast_private=True`` — for a hub whose
    readers the application's ``authorize`` restricts to the people
    concerned. A combination that would publish private events nowhere is a
    :class:`ConfigurationError`, never a silent loss. The JSON is the event's
    cached bytes, made once for every stream.
    """

    def __init__(
        self,
        *,
        per_recipient: bool = True,
        hub_stream: bool = True,
        broadcast_private: bool = False,
    ) -> None:
        _check_push_options(per_recipient, hub_stream, broadcast_private, "")
        self.per_recipient = per_recipient
        self.hub_stream = hub_stream
        self.broadcast_private = broadcast_private
        self._hub: Hub | None = None
        self._backend: Backend | None = None

    def __repr__(self) -> str:
        options = [f"per_recipient={self.per_recipient}"]
        if not self.hub_stream:
            options.append("hub_stream=False")
        if self.broadcast_private:
            options.append("broadcast_private=True")
        return f"PushConsumer({', '.join(options)})"

    @classmethod
    def load_from_config(cls, config: ListenerConfig, prefix: str) -> PushConsumer:
        """Kinto's contract: ``per_recipient`` (true), ``hub_stream`` (true), ``broadcast_private`` (false)."""
        per_recipient = config.get_bool(prefix + "per_recipient", True)
        hub_stream = config.get_bool(prefix + "hub_stream", True)
        broadcast_private = config.get_bool(prefix + "broadcast_private", False)
        _check_push_options(per_recipient, hub_stream, broadcast_private, prefix)
        return cls(
            per_recipient=per_recipient, hub_stream=hub_stream, broadcast_private=broadcast_private
        )

    def bind(self, binding: Binding) -> None:
        if self._hub is not None and self._hub is not binding.hub:
            raise ConfigurationError(
                f"this PushConsumer already pushes for hub {self._hub.label!r}; "
                "create one PushConsumer per hub"
            )
        self._hub, self._backend = binding.hub, binding.backend

    def unbind(self, binding: Binding) -> None:
        if self._hub is binding.hub:
            self._hub = self._backend = None

    def streams(self, event: Event) -> list[str]:
        """The streams ``event`` goes to."""
        if self._hub is None:
            raise ConfigurationError("PushConsumer is not registered on a hub")
        return self.streams_for(self._hub.hub_id, event)

    def streams_for(self, hub_stream: str, event: Event) -> list[str]:
        """The streams ``event`` goes to when the hub's stream is ``hub_stream``."""
        private = bool(event.recipients)
        streams = (
            [hub_stream] if self.hub_stream and (self.broadcast_private or not private) else []
        )
        if private and self.per_recipient:
            streams.extend(user_stream(r) for r in dict.fromkeys(event.recipients))
        return streams

    def consume(self, event: Event) -> None:
        backend = self._backend
        assert backend is not None, "PushConsumer is not registered on a hub"
        _publish(backend, self.streams(event), event.to_json_bytes())

    async def aconsume(self, event: Event) -> None:
        """The async face used by ``Notifications.asend``."""
        backend = self._backend
        assert backend is not None, "PushConsumer is not registered on a hub"
        data = event.to_json_bytes()
        streams = self.streams(event)
        if len(streams) > 1 and _threaded(type(backend)):
            # The backend's aappend is its append in a thread: one thread for every stream.
            await asyncio.to_thread(_publish, backend, streams, data)
            return
        for stream in streams:
            await backend.aappend(stream, data)


def _threaded(backend: type[Backend]) -> bool:
    """Whether ``backend.aappend`` runs in a worker thread (the defaults, all the way down)."""
    if backend.aappend is not Backend.aappend:
        return False
    return not backend._aappend_publishes or backend.apublish is Backend.apublish


def _publish(backend: Backend, streams: list[str], data: bytes) -> None:
    # The id of a pushed event is nobody's business here: append, which need not learn it.
    for stream in streams:
        backend.append(stream, data)


def _check_push_options(
    per_recipient: bool, hub_stream: bool, broadcast_private: bool, prefix: str
) -> None:
    """Refuse the combinations that would drop private events, or ask for the impossible."""
    if broadcast_private and not hub_stream:
        raise ConfigurationError(
            f"{prefix}broadcast_private=True publishes private events to the hub's stream, "
            f"which {prefix}hub_stream=False turns off"
        )
    if not per_recipient and not broadcast_private:
        raise ConfigurationError(
            f"{prefix}per_recipient=False would publish events with recipients nowhere: keep "
            f"{prefix}per_recipient=True (each recipient's user:<id> stream), or pass "
            f"{prefix}broadcast_private=True to publish them on the hub's stream (then restrict "
            "who reads it), or keep them out of this hub with its filter"
        )


def is_async(consumer: Consumer) -> bool:
    """True when ``consumer.consume`` is a coroutine function (or an object with ``async def __call__``)."""
    consume = consumer.consume
    if inspect.iscoroutinefunction(consume):
        return True
    call = getattr(type(consume), "__call__", None)  # noqa: B004 - the class's, not the instance's
    return not inspect.isfunction(consume) and inspect.iscoroutinefunction(call)


def async_face(consumer: Consumer) -> Callable[[Event], Awaitable[Any]] | None:
    """``consumer``'s ``async def aconsume``, which ``asend()`` awaits instead of calling
    ``consume``; None when it has none, or when a subclass overrides ``consume`` below the
    class that wrote ``aconsume`` (the override, not the inherited twin, says what to do)."""
    aconsume = getattr(consumer, "aconsume", None)
    if not inspect.iscoroutinefunction(aconsume):
        return None
    mro = type(consumer).__mro__
    consume_owner = next(c for c in mro if "consume" in c.__dict__)
    aconsume_owner = next((c for c in mro if "aconsume" in c.__dict__), None)
    if aconsume_owner is None or not issubclass(aconsume_owner, consume_owner):
        return None  # set on the instance, or consume overridden below aconsume
    return aconsume
