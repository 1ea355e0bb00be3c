"""Hubs: a labelled filter and the consumers registered on it.

``send()`` reads a hub's registrations as an immutable snapshot, so
registering or removing consumers from other threads never disturbs a send
that is under way. A hub knows the backend in use (given by the delivery
layer, which owns the hubs) only to hand it to its consumers when it binds
them (:class:`~notifycore.consumers.Binding`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from notifycore.backends.capabilities import require_claims
from notifycore.consumers import (
    Binding,
    Consumer,
    FunctionConsumer,
    async_face,
    default_name,
    is_async,
)
from notifycore.errors import ConfigurationError
from notifycore.filters import Always, EventFilter, runs_app_code
from notifycore.preferences import ANY, INBOX_CHANNEL

if TYPE_CHECKING:
    from notifycore.backends.base import Backend
    from notifycore.event import Event

__all__ = ["HUB_ID_PREFIX", "Hub", "Registration", "hub_id"]

HUB_ID_PREFIX = "event-hub-"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
Mode = Literal["inline", "queued"]
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=Consumer)


def hub_id(label: str) -> str:
    """The id of the hub labelled ``label``: also the name of the stream it pushes to."""
    return HUB_ID_PREFIX + label


@dataclass(frozen=True, slots=True)
class Registration:
    """A consumer on a hub, under a stable name, with how it is delivered to."""

    name: str
    consumer: Consumer
    mode: Mode
    filter: EventFilter | None
    queue: str | None
    max_tries: int | None
    dedupe: bool
    is_async: bool
    # Whether the consumer's class overrides the no-op hooks (skipped otherwise).
    has_before: bool
    has_after: bool
    #: Seconds a worker lets this consumer run on one job (None: the ``JOB_TIMEOUT`` setting).
    timeout: float | None = None
    #: The consumer's ``aconsume``, which ``asend()`` awaits instead of ``consume``
    #: (:func:`~notifycore.consumers.async_face`).
    aconsume: Callable[[Event], Awaitable[Any]] | None = None
    #: Whether a send may run this registration on an event loop without blocking it: a
    #: queued consumer (only its job is enqueued, through the backend's async face), or an
    #: inline one that is awaited (an ``async def consume`` or an ``aconsume``), with no
    #: synchronous ``before_consume``/``after_consume``/``on_error`` and a filter that calls
    #: none of the application's code.
    awaitable: bool = False


def _overrides(consumer: Consumer, method: str) -> bool:
    return getattr(type(consumer), method) is not getattr(Consumer, method)


class Hub:
    """Events that pass the hub's filter go to every consumer registered on it."""

    def __init__(self, label: str, backend: Backend | None = None) -> None:
        if not isinstance(label, str) or not _LABEL.match(label):
            raise ConfigurationError(
                f"hub label {label!r} must be 1-200 characters of letters, digits and _.:@- "
                "starting with a letter or digit"
            )
        self._backend = backend
        self.label = label
        self.hub_id = hub_id(label)
        self.filter: EventFilter = Always()
        self._lock = threading.Lock()
        self._registrations: dict[str, Registration] = {}
        #: Snapshot read by send(); replaced, never mutated.
        self.registrations: tuple[Registration, ...] = ()

    def __repr__(self) -> str:
        return f"<Hub {self.label!r} filter={self.filter!r} consumers={list(self._registrations)}>"

    def filter_by(self, event_filter: EventFilter) -> Hub:
        """Replace the hub's filter; returns the hub so calls can be chained."""
        if not isinstance(event_filter, EventFilter):
            raise TypeError(f"filter_by() needs an EventFilter, not {type(event_filter).__name__}")
        self.filter = event_filter
        return self

    @property
    def backend(self) -> Backend | None:
        """The backend its consumers are bound to (None until the hub is given one)."""
        return self._backend

    def use_backend(self, backend: Backend) -> None:
        """Bind every consumer again, to ``backend`` (the delivery layer calls it)."""
        with self._lock:
            if backend is self._backend:
                return
            self._backend = backend
            for registration in self.registrations:
                registration.consumer.bind(Binding(self, backend))

    # -- registration ------------------------------------------------------------------------

    @overload
    def register_consumer(
        self,
        consumer: None = None,
        *,
        name: str | None = None,
        mode: Mode = "inline",
        filter: EventFilter | None = None,
        queue: str | None = None,
        max_tries: int | None = None,
        dedupe: bool = False,
        timeout: float | None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def register_consumer(
        self,
        consumer: C,
        *,
        name: str | None = None,
        mode: Mode = "inline",
        filter: EventFilter | None = None,
        queue: str | None = None,
        max_tries: int | None = None,
        dedupe: bool = False,
        timeout: float | None = None,
    ) -> C: ...

    @overload
    def register_consumer(
        self,
        consumer: F,
        *,
        name: str | None = None,
        mode: Mode = "inline",
        filter: EventFilter | None = None,
        queue: str | None = None,
        max_tries: int | None = None,
        dedupe: bool = False,
        timeout: float | None = None,
    ) -> F: ...

    def register_consumer(
        self,
        consumer: Any = None,
        *,
        name: str | None = None,
        mode: Mode = "inline",
        filter: EventFilter | None = None,
        queue: str | None = None,
        max_tries: int | None = None,
        dedupe: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Register a consumer (an instance or a function); usable as a decorator.

        ``name`` identifies it on this hub (default: its qualified name); two
        instances of one class need two names. ``mode="queued"`` delivers
        through the backend's queue and a worker; ``filter`` narrows what this
        consumer gets beyond the hub's filter. Returns what was passed, so the
        decorated function stays usable.
        """

        def add(target: Any) -> Any:
            self._add(
                target,
                name=name,
                mode=mode,
                filter=filter,
                queue=queue,
                max_tries=max_tries,
                dedupe=dedupe,
                timeout=timeout,
            )
            return target

        return add if consumer is None else add(consumer)

    def _add(
        self,
        target: Any,
        *,
        name: str | None,
        mode: Mode,
        filter: EventFilter | None,
        queue: str | None,
        max_tries: int | None,
        dedupe: bool,
        timeout: float | None = None,
    ) -> Registration:
        if isinstance(target, type):
            raise TypeError(f"register an instance of {target.__name__}, not the class itself")
        if isinstance(target, Consumer):
            consumer = target
        elif callable(target):
            consumer = FunctionConsumer(target)
        else:
            raise TypeError(
                f"a consumer must be a Consumer or a callable, not {type(target).__name__}"
            )
        if mode not in ("inline", "queued"):
            raise ConfigurationError(f"consumer mode must be 'inline' or 'queued', not {mode!r}")
        if filter is not None and not isinstance(filter, EventFilter):
            raise TypeError(f"filter must be an EventFilter, not {type(filter).__name__}")
        if max_tries is not None and (not isinstance(max_tries, int) or max_tries < 1):
            raise ConfigurationError(f"max_tries must be a positive integer, not {max_tries!r}")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < float("inf")
        ):
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        if timeout is not None and mode != "queued":
            raise ConfigurationError(
                "timeout needs mode='queued': it limits how long a worker runs the consumer"
            )
        if name is None:
            name = consumer.name or default_name(consumer)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"consumer name must be a non-empty string, not {name!r}")
        if name in (INBOX_CHANNEL, ANY):
            raise ConfigurationError(
                f"consumer name {name!r} is reserved: in preferences it means "
                + ("keeping the item in the inbox" if name == INBOX_CHANNEL else "every channel")
                + ", so a user could not turn this consumer off alone; choose another name"
            )
        has_before = _overrides(consumer, "before_consume")
        has_after = _overrides(consumer, "after_consume")
        consume_is_async = is_async(consumer)
        aconsume = async_face(consumer)
        # Awaited by asend(), with no sync hook of its own to run in the sender.
        awaited = (consume_is_async or aconsume is not None) and not (
            has_before or has_after or _overrides(consumer, "on_error")
        )
        registration = Registration(
            name=name,
            consumer=consumer,
            mode=mode,
            filter=filter,
            queue=queue,
            max_tries=max_tries,
            dedupe=dedupe,
            is_async=consume_is_async,
            has_before=has_before,
            has_after=has_after,
            timeout=None if timeout is None else float(timeout),
            aconsume=aconsume,
            awaitable=(filter is None or not runs_app_code(filter))
            and (mode == "queued" or awaited),
        )
        with self._lock:
            if name in self._registrations:
                raise ConfigurationError(
                    f"hub {self.label!r} already has a consumer named {name!r}; "
                    "pass name=... to register another one"
                )
            if self._backend is not None:
                if dedupe:  # the worker would refuse it; say so where it is registered
                    require_claims(
                        self._backend,
                        f"de-duplication (dedupe=True on consumer {name!r} of hub {self.label!r})",
                    )
                consumer.bind(Binding(self, self._backend))
            self._registrations[name] = registration
            self.registrations = tuple(self._registrations.values())
        return registration

    def _find_name(self, consumer_or_name: object) -> str | None:
        if isinstance(consumer_or_name, str):
            return consumer_or_name if consumer_or_name in self._registrations else None
        for registration in self.registrations:
            consumer = registration.consumer
            if consumer is consumer_or_name or (
                isinstance(consumer, FunctionConsumer) and consumer.function is consumer_or_name
            ):
                return registration.name
        return None

    def deregister_consumer(self, consumer_or_name: object) -> None:
        """Stop delivering to a consumer, given by name, instance or function."""
        with self._lock:
            name = self._find_name(consumer_or_name)
            if name is None:
                raise ConfigurationError(f"hub {self.label!r} has no consumer {consumer_or_name!r}")
            registration = self._registrations.pop(name)
            self.registrations = tuple(self._registrations.values())
            backend = self._backend
        if backend is not None:
            registration.consumer.unbind(Binding(self, backend))

    def is_registered(self, consumer_or_name: object) -> bool:
        """True when the consumer (name, instance or function) is registered here."""
        return self._find_name(consumer_or_name) is not None

    def get_registration(self, name: str) -> Registration:
        """The registration called ``name``; ``KeyError`` when there is none."""
        return self._registrations[name]

    @property
    def consumers(self) -> dict[str, Consumer]:
        """The registered consumers by name."""
        return {r.name: r.consumer for r in self.registrations}

    @property
    def registered_consumers(self) -> list[Any]:
        """What was registered, in order: each consumer, or the function itself.

        Flask-Notifications' name: ``len()``, ``in`` and
        ``filter(hub.is_registered, hub.registered_consumers)`` work as they
        did. :attr:`consumers` gives them by name.
        """
        return [
            r.consumer.function if isinstance(r.consumer, FunctionConsumer) else r.consumer
            for r in self.registrations
        ]
