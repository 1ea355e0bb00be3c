"""The core's own plugin: it declares the core settings and logs consumer errors.

Registered through ``DEFAULT_PLUGINS`` with the same ``@hookimpl`` a
third-party plugin uses; blocking it (``NOTIFYCORE_DISABLE_PLUGINS=notifycore.core_plugin``)
silences the error log but leaves errors in every ``SendResult``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from notifycore.hookspecs import hookimpl
from notifycore.settings import CORE_SETTINGS, Setting

if TYPE_CHECKING:
    from notifycore.event import Event
    from notifycore.hub import Hub

__all__ = ["notifycore_consumer_error", "notifycore_register_settings"]

logger = logging.getLogger("notifycore")


@hookimpl
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    for setting in CORE_SETTINGS:
        register(setting)


@hookimpl
def notifycore_consumer_error(hub: Hub, consumer: str, event: Event, error: BaseException) -> None:
    logger.error(
        "consumer %s of hub %s failed on event %s: %s: %s",
        consumer,
        hub.label,
        event.event_id,
        type(error).__name__,
        error,
        exc_info=error,
    )
