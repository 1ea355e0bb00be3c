"""The JSON accelerator (orjson, ``notifycore[speed]``): the same bytes and values as without it."""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifycore import Event, Notifications
from notifycore.event import json_accelerator, loads_json, use_json_accelerator
from notifycore.jobs import decode_job, encode_job
from notifycore.web.sse import event_type_of


def both(make: Callable[[], Any]) -> tuple[Any, Any]:
    """What ``make()`` gives (or raises: type and message) with orjson, then without it."""
    answers: list[tuple[Any, ...]] = []
    for enabled in (True, False):
        before = use_json_accelerator(enabled)
        try:
            assert (json_accelerator() == "orjson") is enabled
            answers.append(("value", make()))
        except Exception as exc:
            answers.append(("error", type(exc), str(exc)))
        finally:
            use_json_accelerator(before)
    return answers[0], answers[1]


def same(value: Any) -> Any:
    """``value`` with NaN made comparable, and int and float told apart."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, list):
        return [same(item) for item in value]
    if isinstance(value, dict):
        return [(key, same(item)) for key, item in value.items()]
    return value


@pytest.fixture(autouse=True)
def _accelerator_restored() -> Iterator[None]:
    before = json_accelerator() is not None
    yield
    use_json_accelerator(before)


def test_orjson_from_the_test_extra_is_in_use() -> None:
    assert json_accelerator() == "orjson"


texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
offsets = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=-3, minutes=-30)),
        timezone(timedelta(seconds=1, microseconds=7)),
    ]
)


@given(
    title=texts,
    body=texts,
    sender=texts,
    event_type=texts.filter(bool),
    recipients=st.lists(texts.filter(lambda t: t and t == t.strip() and t.isprintable())),
    tags=st.lists(texts),
    timestamp=st.datetimes(timezones=offsets),
    expiration=st.none() | st.datetimes(timezones=offsets),
)
def test_an_event_encodes_to_the_same_bytes_either_way(
    title: str,
    body: str,
    sender: str,
    event_type: str,
    recipients: list[str],
    tags: list[str],
    timestamp: datetime,
    expiration: datetime | None,
) -> None:
    def make() -> Event:
        return Event("id", event_type, title, body, timestamp, sender, recipients, tags, expiration)

    fast, plain = both(lambda: (make().to_json_bytes(), make().to_json(), make().json_size()))
    assert fast == plain
    assert plain[1][0] == plain[1][1].encode()


def test_extra_fields_encode_as_the_standard_library_does() -> None:
    # orjson writes some floats differently (1e-07 vs 1e-7): events with extras never use it.
    def make() -> bytes:
        stamp = datetime(2026, 1, 2, tzinfo=UTC)
        extra: dict[str, Any] = {"ratio": 1e-7, "big": 2**70, "nested": {"x": [0.1, -0.0]}}
        return Event("id", "t", timestamp=stamp, **extra).to_json_bytes()

    fast, plain = both(make)
    assert fast == plain
    assert b'"ratio":1e-07' in plain[1] and str(2**70).encode() in plain[1]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**80)
    | st.integers(min_value=-(2**80), max_value=-(2**62))
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


def _parsed(data: str | bytes) -> Any:
    return same(loads_json(data))


@given(json_values)
def test_parsing_gives_the_same_values_either_way(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    for data in (text, text.encode()):
        fast, plain = both(functools.partial(_parsed, data))
        assert fast == plain


@pytest.mark.parametrize(
    "data",
    [
        "123456789012345678901234567890",  # beyond 64 bits: orjson would give a float
        "-9223372036854775809",
        "18446744073709551616",
        '{"n": 18446744073709551615}',
        "NaN",
        "[Infinity, -Infinity]",
        "1e400",
        '"\\ud800"',  # a lone surrogate: the standard library reads it, Event refuses it later
        '{"a": 1, "a": 2}',
        "[" * 2000 + "]" * 2000,  # deeper than orjson goes
        "[" * 100_000 + "]" * 100_000,  # deeper than Python's recursion limit
        '{"a": 1',
        "",
        '"\x01"',  # a raw control character in a string
        "\ufeff{}",
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
        b'{"a": "\xff"}',  # not UTF-8
        '{"a": 1} x',
        "-0",
        "1E+2",
        "0.1e-400",
    ],
)
def test_odd_json_is_read_or_refused_as_the_standard_library_does(data: str | bytes) -> None:
    fast, plain = both(lambda: same(loads_json(data)))
    assert fast == plain


@pytest.mark.parametrize(
    "data",
    [
        b'{"event_type": "big", "n": 123456789012345678901234567890, "x": [1.5]}',
        b'{"event_type": "\\ud800"}',  # a lone surrogate: orjson refuses, json reads it
        b'{"event_type": "a", "event_type": "b"}',
        b'{"event_type": "nan", "n": NaN}',
        b'{"event_type": 1}',
        b'{"event_type": ""}',
        b'{"event_type": "\xff"}',
        b"[1, 2]",
        b"{",
    ],
)
def test_an_sse_frames_event_type_is_read_the_same_either_way(data: bytes) -> None:
    fast, plain = both(lambda: event_type_of(data))
    assert fast == plain


def test_jobs_and_posted_events_decode_the_same_either_way() -> None:
    stamp = datetime(2026, 1, 2, tzinfo=UTC)
    event = Event("id", "t", body="b", timestamp=stamp, n=2**70)
    payload = encode_job("Hub", "consumer", event.to_json_bytes())
    fast, plain = both(lambda: decode_job(payload).event.to_dict())
    assert fast == plain and plain[1]["n"] == 2**70
    bad = b'{"v": 1, "hub": "h", "consumer": "c", "event": {"event_type": NaN}}'
    fast, plain = both(lambda: decode_job(bad))
    assert fast == plain and plain[0] == "error"


def test_the_environment_can_leave_orjson_unused() -> None:
    code = "from notifycore.event import json_accelerator; print(json_accelerator())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")}
    for value, expected in (("0", "None"), ("off", "None"), ("1", "orjson"), (None, "orjson")):
        run_env = env if value is None else {**env, "NOTIFYCORE_JSON_ACCELERATOR": value}
        out = subprocess.run(
            [sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == expected, out.stderr
    # It is not a setting: Notifications does not call it an unknown one.
    Notifications(
        config={"BACKEND": "memory"}, environ={"NOTIFYCORE_JSON_ACCELERATOR": "0"}
    ).close()
