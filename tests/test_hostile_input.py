"""Hostile input gives the event or InvalidEvent naming the field, never another exception.

Every way in: ``Event(...)``, ``Event.from_dict``, ``Event.from_json``,
``send()`` with an Event, a dict, a str or bytes, and queued jobs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifycore import (
    ConfigurationError,
    Event,
    InvalidEvent,
    JobOutcome,
    Notifications,
    PushConsumer,
    SendResult,
    Status,
    Worker,
)
from notifycore.errors import InvalidJob
from notifycore.event import EVENT_DEPTH_CEILING, parse_event_json
from notifycore.jobs import decode_job, encode_job
from tests.hostile import FAST, event_fields, json_bodies, json_texts, nested, to_json

# Each test runs with the JSON accelerator (orjson) and without it.
pytestmark = pytest.mark.usefixtures("json_paths")

Make = Callable[..., Notifications]


def assert_clear(error: InvalidEvent) -> None:
    """An InvalidEvent a web endpoint can put in a JSON reply and a log line as it is."""
    assert isinstance(error.field, str) and error.field
    text = str(error)
    text.encode("utf-8")  # no lone surrogate copied from the input
    error.field.encode("utf-8")
    assert len(text) < 1000, "the message quotes too much of the input"


def assert_sound(event: Event) -> None:
    """An accepted event can be encoded for a broker and read back the same."""
    data = event.to_json_bytes()
    assert Event.from_json(data, max_size=None, max_depth=None) == event
    assert Event.from_dict(event.to_dict()) == event


# -- lone surrogates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_id": "a\ud800"}, "event_id"),
        ({"event_type": "\udfff"}, "event_type"),
        ({"title": "hello \ud83d"}, "title"),
        ({"body": "\udc80"}, "body"),
        ({"sender": "\ud800"}, "sender"),
        ({"recipients": ["bob", "\ud800"]}, "recipients"),
        ({"tags": ["\udfff"]}, "tags"),
        ({"timestamp": "2024-01-01T00:00:00\ud800"}, "timestamp"),
        ({"colour": "r\ud800d"}, "colour"),
        ({"data": {"k": ["ok", "\ud800"]}}, "data.k[1]"),
        ({"data": {"\ud800": 1}}, "data"),
        ({"\ud800": 1}, "\\ud800"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {"event_id": None, "event_type": "t", **kwargs}
    with pytest.raises(InvalidEvent) as info:
        Event(**fields)
    assert info.value.field == field
    assert_clear(info.value)
    # The same through JSON, where a client writes them as \ud800 escapes.
    if fields["event_id"] is None:
        del fields["event_id"]
    with pytest.raises(InvalidEvent) as info:
        Event.from_json(json.dumps(fields))
    assert info.value.field == field
    assert_clear(info.value)


def test_send_refuses_surrogates_in_every_form_and_delivers_nothing(
    make_notifications: Make,
) -> None:
    n = make_notifications(CONSUMER_ERRORS="raise")
    got: list[Event] = []
    hub = n.create_hub("H")
    hub.register_consumer(PushConsumer())
    hub.register_consumer(got.append, name="app")
    text = '{"event_type": "t", "title": "\\ud800"}'
    for form in (text, text.encode(), json.loads(text)):
        with pytest.raises(InvalidEvent) as info:
            n.send(form)
        assert info.value.field == "title"
    assert got == []
    assert n.backend.read(hub.hub_id).messages == []


# -- nesting -----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [EVENT_DEPTH_CEILING + 1, 300, 600, 950, 5000])
def test_deep_nesting_is_refused_naming_the_field(depth: int) -> None:
    with pytest.raises(InvalidEvent) as info:
        Event(None, "t", payload=nested(depth))
    assert info.value.field == "payload"
    assert_clear(info.value)
    with pytest.raises(InvalidEvent) as info:
        Event.from_dict({"event_type": "t", "payload": {"a": nested(depth)}})
    assert info.value.field == "payload"
    document = '{"event_type": "t", "payload": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(InvalidEvent) as info:
        Event.from_json(document, max_size=None)
    assert info.value.field in ("payload", "event")  # "event": too deep for the parser itself
    assert_clear(info.value)


def test_a_cyclic_value_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidEvent, match="nested more than"):
        Event(None, "t", loop=loop)


def test_the_ceiling_itself_is_accepted_and_sound() -> None:
    event = Event(None, "t", payload=nested(EVENT_DEPTH_CEILING))
    assert_sound(event)
    with pytest.raises(InvalidEvent, match="payload: is nested 128 levels deep, over the limit"):
        event.check_depth(32)


def test_max_event_depth_is_a_setting_send_applies_to_every_form(make_notifications: Make) -> None:
    n = make_notifications(MAX_EVENT_DEPTH=3)
    n.create_hub("H").register_consumer(PushConsumer(), name="push")
    ok = {"event_type": "t", "data": {"a": [[1]]}}  # 3 levels
    deep = {"event_type": "t", "data": {"a": [[[1]]]}}  # 4 levels
    for form in (ok, json.dumps(ok), json.dumps(ok).encode(), Event.from_dict(ok)):
        assert n.send(form).outcome("H", "push").status is Status.RAN
    for form in (deep, json.dumps(deep), json.dumps(deep).encode(), Event.from_dict(deep)):
        with pytest.raises(InvalidEvent) as info:
            n.send(form)
        assert info.value.field == "data"
        assert "over the limit of 3" in str(info.value)
    assert len(n.backend.read("event-hub-H").messages) == 4


def test_the_default_depth_limit_is_32(make_notifications: Make) -> None:
    n = make_notifications()
    assert n.settings["MAX_EVENT_DEPTH"] == 32
    n.send(Event(None, "t", x=nested(32)))
    with pytest.raises(InvalidEvent, match="x: is nested 33 levels deep"):
        n.send(Event(None, "t", x=nested(33)))


@pytest.mark.parametrize("value", [0, EVENT_DEPTH_CEILING + 1, "deep"])
def test_max_event_depth_out_of_range_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="MAX_EVENT_DEPTH"):
        Notifications(config={"BACKEND": "memory", "MAX_EVENT_DEPTH": value}, environ={})


# -- numbers, keys, encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ('{"event_type": "t", "n": NaN}', "n"),
        ('{"event_type": "t", "n": -Infinity}', "n"),
        ('{"event_type": "t", "n": 1e999}', "n"),
        ('{"event_type": "t", "n": ' + "9" * 1300 + "}", "n"),
        ('{"event_type": "t", "n": ' + "9" * 5000 + "}", "event"),
        ('{"event_type": "t", "_n": 1}', "_n"),
        ('{"event_type": "t", "": NaN}', "event"),
        ('{"event_type": "t", "self": 1}', "self"),
        ('["event_type"]', "event"),
        ('"event"', "event"),
        ("null", "event"),
    ],
)
def test_numbers_keys_and_shapes_json_cannot_carry(document: str, field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Event.from_json(document, max_size=None)
    assert info.value.field == field
    assert_clear(info.value)


def test_bytes_must_be_utf8() -> None:
    with pytest.raises(InvalidEvent, match="not UTF-8"):
        Event.from_json('{"event_type": "t"}'.encode("utf-16"))
    with pytest.raises(InvalidEvent, match="not UTF-8"):
        Event.from_json(b'{"event_type": "\xed\xa0\x80"}')  # a surrogate encoded as UTF-8 bytes
    assert parse_event_json(b'{"event_type": "t\xc3\xa9"}') == {"event_type": "té"}


def test_messages_quote_little_of_a_huge_value() -> None:
    with pytest.raises(InvalidEvent) as info:
        Event(None, "t", timestamp="x" * 100_000)
    assert_clear(info.value)
    with pytest.raises(InvalidEvent) as info:
        Event.from_dict({"event_type": "t", "data": {10**5000: 1}})
    assert_clear(info.value)
    with pytest.raises(InvalidEvent) as info:
        Event.from_dict({10**5000: 1, "event_type": "t"})  # type: ignore[dict-item]
    assert_clear(info.value)


def test_subclasses_of_str_and_int_are_stored_as_json_gives_them_back() -> None:
    class Marked(str):
        pass

    class Number(int):
        pass

    event = Event(None, "t", Marked("title"), label=Marked("x"), n=Number(3), k={Marked("a"): 1})
    assert type(event.title) is str and type(event["label"]) is str and type(event["n"]) is int
    assert_sound(event)


# -- queued jobs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        encode_job("H", "c", b'{"event_type": "t", "title": "\\ud800"}'),
        encode_job("H", "c", b'{"event_type": "t", "x": ' + b"[" * 600 + b"]" * 600 + b"}"),
        b'{"v": 1, "hub": "\\ud800", "consumer": "c", "event": {"event_type": "t"}}',
    ],
)
def test_hostile_jobs_are_invalid_jobs(payload: bytes) -> None:
    with pytest.raises(InvalidJob) as info:
        decode_job(payload)
    str(info.value).encode("utf-8")


def test_a_job_may_be_held_to_the_depth_limit() -> None:
    payload = encode_job("H", "c", json.dumps({"event_type": "t", "x": nested(5)}).encode())
    assert decode_job(payload).event["x"] == nested(5)
    with pytest.raises(InvalidJob, match="over the limit of 4"):
        decode_job(payload, max_event_depth=4)


def test_a_worker_dead_letters_a_hostile_job(make_notifications: Make) -> None:
    n = make_notifications(MAX_TRIES=3, RETRY_BACKOFF=0.0)
    n.create_hub("H").register_consumer(lambda e: None, name="c", mode="queued")
    n.backend.enqueue("notifycore", encode_job("H", "c", b'{"event_type": "\\udfff"}'))
    assert Worker(n).run_once() is JobOutcome.DEAD
    (letter,) = n.backend.dead_letters("notifycore")
    assert "lone surrogate" in letter.error


# -- properties --------------------------------------------------------------------------------


@FAST
@given(fields=event_fields())
def test_event_constructor_property(fields: dict[str, Any]) -> None:
    try:
        event = Event(**fields)
    except InvalidEvent as error:
        assert_clear(error)
    else:
        assert_sound(event)


@FAST
@given(text=json_texts())
def test_from_json_text_property(text: str) -> None:
    try:
        event = Event.from_json(text, max_size=None)
    except InvalidEvent as error:
        assert_clear(error)
    else:
        assert_sound(event)


@FAST
@given(data=json_bodies)
def test_from_json_bytes_property(data: bytes) -> None:
    try:
        event = Event.from_json(data, max_size=None)
    except InvalidEvent as error:
        assert_clear(error)
    else:
        assert_sound(event)


@pytest.fixture(scope="module")
def delivering() -> Iterator[Notifications]:
    """A hub that pushes, an inline consumer and a queued one (a worker runs it)."""
    n = Notifications(config={"BACKEND": "memory", "CONSUMER_ERRORS": "raise"}, environ={})
    hub = n.create_hub("H")
    hub.register_consumer(PushConsumer(per_recipient=True))
    hub.register_consumer(lambda e: json.loads(e.to_json_bytes()), name="inline")
    hub.register_consumer(lambda e: e.to_dict(), name="queued", mode="queued")
    yield n
    n.close()


def assert_delivered(notifications: Notifications, result: SendResult) -> None:
    """Every consumer ran, or got its job, and the worker runs that job."""
    assert all(o.status is not Status.FAILED for o in result.outcomes)
    queued = result.outcome("H", "queued").status
    if queued is Status.ENQUEUED:
        assert Worker(notifications).run_once() is JobOutcome.DONE
    else:  # an expiration_datetime in the past
        assert queued is Status.EXPIRED


def _as(form: str, fields: dict[str, Any]) -> Any:
    if form == "event":
        return Event(**fields)
    if form == "dict":
        return fields
    text = to_json(fields)
    return text if form == "str" else text.encode("utf-8")


@FAST
@given(
    form=st.sampled_from(["event", "dict", "str", "bytes"]),
    fields=event_fields(),
)
def test_send_property(delivering: Notifications, form: str, fields: dict[str, Any]) -> None:
    try:
        result = delivering.send(_as(form, fields))
    except InvalidEvent as error:
        assert_clear(error)
        return
    assert_delivered(delivering, result)


@FAST
@given(data=json_bodies | json_texts())
def test_send_raw_json_property(delivering: Notifications, data: str | bytes) -> None:
    try:
        result = delivering.send(data)
    except InvalidEvent as error:
        assert_clear(error)
        return
    assert_delivered(delivering, result)
