"""Hypothesis strategies for hostile event input, shared by the core's and the adapters' tests.

Lone surrogates, deep nesting, huge integers, NaN and infinities, odd keys,
JSON that is not an object, bytes that are not UTF-8: what a client, a
broker or a careless caller may hand to notifycore.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Bounded and without deadlines: a busy machine must not make these flaky.
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SURROGATES = ["\ud800", "\udfff", "a\udc80b", "\ud83dx"]

#: Any text, lone surrogates included (Hypothesis leaves them out unless asked).
texts = st.text(st.characters(exclude_categories=()), max_size=8) | st.sampled_from(SURROGATES)
keys = texts | st.sampled_from(["_private", "self", "event_type", "", "a.b", "é", "x" * 300])
huge_ints = st.sampled_from([10**1300, -(10**1300), 2**4001, 2**63, -(2**64)])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()  # NaN and infinities included
    | texts
)


def nested(depth: int, leaf: Any = 0) -> Any:
    """A list ``depth`` levels deep, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


class Nested(list[Any]):
    """``nested(depth)`` that a failure report prints as such, not as a thousand brackets."""

    def __init__(self, depth: int) -> None:
        super().__init__([nested(depth - 1)])
        self.depth = depth

    def __repr__(self) -> str:
        return f"nested({self.depth})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


deep_values = st.integers(1, 3000).map(Nested)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=3),
    max_leaves=10,
)
values = json_values | deep_values | st.sampled_from([object(), {1: "x"}, {"k": {1, 2}}, b"x"])
field_values = texts | values | st.lists(texts, max_size=3)
timestamps = st.sampled_from(
    ["2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05", "yesterday", "\ud800", None, 5]
)


@st.composite
def event_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments for ``Event(...)``: often valid, often hostile."""
    fields: dict[str, Any] = {
        "event_id": draw(st.none() | texts | st.integers()),
        "event_type": draw(st.sampled_from(["chat", "t"]) | texts | st.integers()),
    }
    for name in ("title", "body", "sender"):
        if draw(st.booleans()):
            fields[name] = draw(field_values)
    for name in ("recipients", "tags"):
        if draw(st.booleans()):
            fields[name] = draw(st.lists(texts, max_size=3) | field_values)
    for name in ("timestamp", "expiration_datetime"):
        if draw(st.booleans()):
            fields[name] = draw(timestamps)
    extra = draw(st.dictionaries(keys, values, max_size=3))
    for key, value in extra.items():
        fields.setdefault(key, value)
    return fields


def to_json(data: Any) -> str:
    """JSON text as a lenient encoder writes it: surrogates escaped, NaN as NaN, any depth."""
    if isinstance(data, Nested):
        return "[" * data.depth + "0" + "]" * data.depth
    if isinstance(data, dict):
        items = (f"{json.dumps(str(k))}:{to_json(v)}" for k, v in data.items())
        return "{" + ",".join(items) + "}"
    if isinstance(data, (list, tuple)):
        return "[" + ",".join(to_json(v) for v in data) + "]"
    try:
        return json.dumps(data, allow_nan=True)
    except (TypeError, ValueError):  # a set, bytes, an object: its repr, as a string
        return json.dumps(repr(data))


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """A request body's text: an event object, hostile or not, or any other JSON (or not JSON)."""
    kind = draw(st.sampled_from(["event", "event", "deep", "deep-top", "digits", "other", "raw"]))
    if kind == "event":
        fields = draw(event_fields())
        fields.pop("self", None)
        return to_json(fields)
    if kind == "deep":
        depth = draw(st.integers(1, 3000))
        return '{"event_type":"t","x":' + "[" * depth + "]" * depth + "}"
    if kind == "deep-top":
        depth = draw(st.integers(1, 3000))
        return "[" * depth + "]" * depth
    if kind == "digits":
        return '{"event_type":"t","n":' + "9" * draw(st.integers(1, 6000)) + "}"
    if kind == "other":
        return to_json(draw(json_values))
    return draw(
        st.sampled_from(
            [
                '{"event_type":"t","x":NaN}',
                '{"event_type":"t","x":-Infinity}',
                '{"event_type":"t","x":1e999}',
                '{"event_type":"t","\\ud800":1}',
                '{"event_type":"t","x":{"\\udfff":1}}',
                '{"event_type":"\\ud800"}',
                '{"event_type":"t","recipients":["\\udc80"]}',
                '{"event_type":"t","event_type":"u"}',
                "",
                "{",
                "null",
                "[]",
                "{}",
                '"text"',
            ]
        )
        | st.text(max_size=20)
    )


#: A request body's bytes: the texts above as UTF-8, as UTF-16, or any bytes at all.
json_bodies = (
    json_texts().map(lambda text: text.encode("utf-8", "surrogatepass"))
    | json_texts().map(lambda text: text.encode("utf-16", "surrogatepass"))
    | st.binary(max_size=40)
    | st.sampled_from([b"\xff\xfe{}", b'{"event_type":"\xed\xa0\x80"}', b'{"event_type":"t\xc3"}'])
)
