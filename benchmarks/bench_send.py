"""send() of one event through one hub filter to two inline consumers, on the memory backend.

Beside it, the same work as a bare Python loop: build the event's dict (a
uuid4 id and an ISO timestamp, like Event does), json.dumps it, evaluate three
predicates (the hub's filter: type, sender, not before a date), call two
functions. Both build a fresh event each time.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from benchmarks.common import Measurement, best_rate
from notifycore import Event, Notifications
from notifycore.filters import BeforeDate, Not, WithEventType, WithSender

NAME = "send() to two inline consumers (memory)"
# The core alone: no installed third-party plugin (the tests' tiny one, say) runs hooks.
os.environ["NOTIFYCORE_LOAD_PLUGINS"] = ""


def bare_loop(count: int) -> None:
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
    count = 20_000 if quick else 100_000
    raw = best_rate(bare_loop, count)
    ours = best_rate(notifycore_loop, count)
    return [Measurement(NAME, ours, "bare Python loop", raw, "events/s")]
