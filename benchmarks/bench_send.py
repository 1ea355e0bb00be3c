"""send() of one event through one hub filter to two inline consumers, on the memory backend.

Beside it, two bare Python loops building a fresh event each time. The
*irreducible* one does only what any such send must: build the event's dict
(an id from a counter, the time as a float), ``json.dumps`` it, evaluate three
predicates (the hub's filter: type, sender, not before a date) and call two
functions. The other builds the dict as ``Event`` used to: a uuid4 id and an
ISO timestamp, parsed back for the date predicate. notifycore's ``Event(None,
...)`` makes a time-ordered random id and takes the current time, and
``send()`` checks the event's limits, matches the filter, runs both consumers
with their hooks and returns a ``SendResult``. The three loops take turns,
round by round; each row gives the medians.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import Measurement, alternate, rate_of
from notifycore import Event, Notifications
from notifycore.filters import BeforeDate, Not, WithEventType, WithSender

NAME = "send() to two inline consumers (memory)"
# The core alone: no installed third-party plugin (the tests' tiny one, say) runs hooks.
os.environ["NOTIFYCORE_LOAD_PLUGINS"] = ""
LIMIT = (
    "one core: the loop is single-threaded Python (the GIL); a second core adds nothing, "
    "and other work on the machine slows both sides alike"
)


def irreducible_loop(count: int) -> None:
    start = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    sink: list[Any] = []
    first, second = sink.append, sink.append
    now = time.time
    for i in range(count):
        data = {
            "event_id": str(i),
            "event_type": "test",
            "title": "Title",
            "body": f"body {i}",
            "timestamp": now(),
            "sender": "system",
            "recipients": [],
            "tags": [],
            "expiration_datetime": None,
        }
        encoded = json.dumps(data)
        if (
            data["event_type"] == "test"
            and data["sender"] == "system"
            and not data["timestamp"] < start
        ):
            first(encoded)
            second(data)
        sink.clear()


def uuid_loop(count: int) -> None:
    start = datetime(2000, 1, 1, tzinfo=UTC)
    sink: list[Any] = []
    first, second = sink.append, sink.append
    for i in range(count):
        data = {
            "event_id": str(uuid.uuid4()),
            "event_type": "test",
            "title": "Title",
            "body": f"body {i}",
            "timestamp": datetime.now(UTC).isoformat(),
            "sender": "system",
            "recipients": [],
            "tags": [],
            "expiration_datetime": None,
        }
        encoded = json.dumps(data)
        if (
            data["event_type"] == "test"
            and data["sender"] == "system"
            and not datetime.fromisoformat(data["timestamp"]) < start
        ):
            first(encoded)
            second(data)
        sink.clear()


def notifycore_loop(count: int) -> None:
    notifications = Notifications(config={"BACKEND": "memory"}, environ={})
    hub = notifications.create_hub("Bench")
    start = datetime(2000, 1, 1, tzinfo=UTC)
    hub.filter_by(WithEventType("test") & WithSender("system") & Not(BeforeDate(start)))
    sink: list[Any] = []
    hub.register_consumer(sink.append, name="first")
    hub.register_consumer(sink.append, name="second")
    send = notifications.send
    for i in range(count):
        send(Event(None, "test", "Title", f"body {i}", sender="system"))
        sink.clear()
    notifications.close()


def run(quick: bool = False) -> list[Measurement]:
    count, rounds = (20_000, 3) if quick else (50_000, 9)
    medians = alternate(
        {
            "ours": lambda: rate_of(notifycore_loop, count),
            "irreducible": lambda: rate_of(irreducible_loop, count),
            "uuid": lambda: rate_of(uuid_loop, count),
        },
        rounds,
    )
    return [
        Measurement(
            "send() to two inline consumers (memory)",
            medians["ours"],
            "bare loop: dict, json.dumps, 3 predicates, 2 calls",
            medians["irreducible"],
            "events/s",
            aim=0.5,
            limit=LIMIT,
        ),
        Measurement(
            "send() to two inline consumers (memory)",
            medians["ours"],
            "the same bare loop with uuid4 + isoformat",
            medians["uuid"],
            "events/s",
            aim=0.9,
            limit=LIMIT,
        ),
    ]
