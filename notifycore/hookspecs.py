"""The hook specifications: every place a plugin can add or change behaviour.

A plugin is a module (or object) with functions marked ``@hookimpl`` whose
names are the ones below; it is registered through the ``notifycore``
entry-point group. Each hook is documented in ``docs/hooks.md``. Any hook
may be implemented ``async def``: async callers await it in their loop, sync
ones run it on a helper loop (:mod:`notifycore.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from notifycore.backends.base import Backend
    from notifycore.event import Event
    from notifycore.hub import Hub
    from notifycore.notifications import Notifications
    from notifycore.result import SendResult
    from notifycore.settings import Setting

hookspec = pluggy.HookspecMarker("notifycore")
hookimpl = pluggy.HookimplMarker("notifycore")


@hookspec
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    """Declare configuration keys (name, type, default, help) by calling ``register``."""


@hookspec(firstresult=True)
def notifycore_init_app(notifications: Notifications, app: Any) -> bool | None:
    """Bind ``notifications`` to a web ``app``; return True if this plugin understood the app."""


@hookspec
def notifycore_notifications_created(notifications: Notifications) -> None:
    """Called once a ``Notifications`` object has its settings, before any hub exists."""


@hookspec
def notifycore_before_send(notifications: Notifications, event: Event) -> None:
    """Called before an event is matched against the hubs; raising stops the send."""


@hookspec
def notifycore_after_send(notifications: Notifications, event: Event, result: SendResult) -> None:
    """Called after every hub and consumer had the event, with what happened to each."""


@hookspec
def notifycore_before_consume(hub: Hub, consumer: str, event: Event) -> None:
    """Called just before consumer ``consumer`` of ``hub`` handles ``event``."""


@hookspec
def notifycore_after_consume(hub: Hub, consumer: str, event: Event) -> None:
    """Called after consumer ``consumer`` of ``hub`` handled ``event`` without error."""


@hookspec
def notifycore_consumer_error(hub: Hub, consumer: str, event: Event, error: BaseException) -> None:
    """Called when consumer ``consumer`` of ``hub`` raised ``error`` while handling ``event``."""


@hookspec(firstresult=True)
def notifycore_authorize(principal: Any, stream: str) -> bool | None:
    """Decide whether ``principal`` may read ``stream``; None leaves it to other plugins."""


@hookspec(firstresult=True)
def notifycore_authorize_send(principal: Any, event: Event) -> bool | None:
    """Decide whether ``principal`` may send ``event`` (with the sender it claims); None: undecided."""


@hookspec
def notifycore_metric(name: str, value: float, tags: dict[str, str]) -> None:
    """Receive a counter increment or measurement (``events.sent``, ``events.expired``...)."""


@hookspec
def notifycore_backend_state(backend: Backend, state: str, error: BaseException | None) -> None:
    """Told when a backend's connection changes ``state`` (``disconnected``, ``reconnected``)."""


@hookspec(firstresult=True)
def notifycore_load_preferences(user: str) -> dict[str, dict[str, bool]] | None:
    """Return ``user``'s notification preferences from the app's own store; None: notifycore's."""


@hookspec(firstresult=True)
def notifycore_save_preferences(user: str, preferences: dict[str, dict[str, bool]]) -> bool | None:
    """Store ``user``'s (checked) preferences in the app's own store; True when it did."""
