"""Calling a consumer by hand, as Flask-Notifications did: ``consumer(event_json)`` runs its hooks."""

from __future__ import annotations

from typing import Any

import pytest

from notifycore import Consumer, Event, FunctionConsumer, InvalidEvent


class Recording(Consumer):
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def before_consume(self, event: Event) -> None:
        self.calls.append(f"before {event.title}")

    def consume(self, event: Event) -> str:
        self.calls.append(f"consume {event.title}")
        if self.fail:
            raise RuntimeError("no")
        return "done"

    def after_consume(self, event: Event) -> None:
        self.calls.append(f"after {event.title}")

    def on_error(self, event: Event, error: BaseException) -> None:
        self.calls.append(f"error {error}")


@pytest.mark.parametrize(
    "given",
    [
        Event("1", "t", "hello"),
        Event("1", "t", "hello").to_json(),
        Event("1", "t", "hello").to_json_bytes(),
        {"event_id": "1", "event_type": "t", "title": "hello"},
    ],
)
def test_a_consumer_called_with_an_event_its_json_or_a_dict_runs_its_hooks(given: Any) -> None:
    consumer = Recording()
    assert consumer(given) == "done"
    assert consumer.calls == ["before hello", "consume hello", "after hello"]


def test_a_failing_consumer_reports_to_on_error_and_raises() -> None:
    consumer = Recording(fail=True)
    with pytest.raises(RuntimeError, match="no"):
        consumer(Event(None, "t", "x"))
    assert consumer.calls == ["before x", "consume x", "error no"]


def test_bad_json_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent):
        Recording()("{not json")


def test_an_async_consumer_is_not_called_by_hand() -> None:
    async def later(event: Event) -> None:
        pass

    with pytest.raises(TypeError, match="is async: await consumer.consume"):
        FunctionConsumer(later)(Event(None, "t", "x"))
