"""The core's own plugin: its settings, and logging of consumer errors.

Registered through ``DEFAULT_PLUGINS`` with the same ``@hookimpl`` a
third-party plugin uses; blocking it (``NOTIFYCORE_DISABLE_PLUGINS=notifycore.builtin``)
silences the error log but leaves errors in every ``SendResult``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from notifycore.config import Setting
from notifycore.event import DEFAULT_MAX_EVENT_DEPTH, DEFAULT_MAX_EVENT_SIZE, EVENT_DEPTH_CEILING
from notifycore.hookspecs import hookimpl

if TYPE_CHECKING:
    from notifycore.event import Event
    from notifycore.hub import Hub

logger = logging.getLogger("notifycore")

#: The backend used when ``BACKEND`` is not set.
DEFAULT_BACKEND = "sqlite"

CORE_SETTINGS = (
    Setting(
        "BACKEND",
        str,
        DEFAULT_BACKEND,
        "Backend: an entry-point name (memory, sqlite, redis, amqp) or pkg.mod:Class.",
        allow_objects=True,
    ),
    Setting(
        "BACKEND_URL",
        str,
        None,
        "Where the backend's data lives; each backend documents its form.",
        nullable=True,
        secret=True,
    ),
    Setting(
        "MAX_EVENT_SIZE",
        int,
        DEFAULT_MAX_EVENT_SIZE,
        "Largest event, in bytes of JSON.",
        minimum=256,
    ),
    Setting(
        "MAX_EVENT_DEPTH",
        int,
        DEFAULT_MAX_EVENT_DEPTH,
        "Deepest nesting of lists and objects in one field of an event (`[1]` is 1, "
        '`{"a": [1]}` 2); deeper events are refused with InvalidEvent.',
        minimum=1,
        maximum=EVENT_DEPTH_CEILING,
    ),
    Setting(
        "CONSUMER_ERRORS",
        str,
        "log",
        "What send() does when a consumer raises: 'log' (and call the hook) or 'raise' (tests).",
        choices=("log", "raise"),
    ),
    Setting("STREAM_MAXLEN", int, 10_000, "Messages kept per stream for replay.", minimum=1),
    Setting(
        "STREAM_MAX_AGE",
        float,
        0.0,
        "Seconds a stream message is kept for replay; 0 keeps them by count only.",
        minimum=0,
    ),
    Setting(
        "DEFAULT_QUEUE", str, "notifycore", "Queue that queued consumers use unless they name one."
    ),
    Setting(
        "MAX_TRIES",
        int,
        5,
        "Deliveries of a queued job before it becomes a dead letter.",
        minimum=1,
    ),
    Setting(
        "RETRY_BACKOFF",
        float,
        1.0,
        "Seconds before the first retry, doubled on each further try.",
        minimum=0,
    ),
    Setting(
        "RETRY_BACKOFF_MAX", float, 300.0, "Longest wait between two tries, in seconds.", minimum=0
    ),
    Setting(
        "DEDUPE_TTL",
        float,
        7 * 24 * 3600.0,
        "Seconds a de-duplicating consumer remembers that it handled an event.",
        minimum=1,
    ),
    Setting(
        "VISIBILITY_TIMEOUT",
        float,
        60.0,
        "Seconds a reserved job stays hidden before another worker may take it.",
        minimum=0.1,
    ),
    Setting(
        "JOB_TIMEOUT",
        float,
        None,
        "Seconds a worker lets a queued consumer run on one job before the try counts as "
        "failed (ConsumerTimeout); unset: VISIBILITY_TIMEOUT, which it may not exceed.",
        nullable=True,
        minimum=0.001,
    ),
    Setting(
        "WORKER_GRACE_PERIOD",
        float,
        30.0,
        "Seconds a stopping worker (SIGTERM, stop_worker()) lets its jobs in flight finish; "
        "jobs still running then go back to the queue.",
        minimum=0,
    ),
    Setting(
        "HUBS",
        dict,
        None,
        "Hubs to create: label -> {filter, listeners} (see docs/listeners.md).",
        nullable=True,
    ),
    Setting(
        "LISTENERS",
        dict,
        None,
        "Listeners to load: name -> {use, mode, queue, actions, resources, ...}.",
        nullable=True,
    ),
)


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
