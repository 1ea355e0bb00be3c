from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifycore import Event, InvalidFilter
from notifycore.filters import (
    AfterDate,
    Always,
    And,
    BeforeDate,
    EventFilter,
    Expired,
    Field,
    Never,
    Not,
    Or,
    Predicate,
    WithEventType,
    WithId,
    WithRecipients,
    WithSender,
    WithTag,
    Xor,
    filter_from_dict,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ev(**kw: Any) -> Event:
    kw.setdefault("event_id", "id-1")
    kw.setdefault("event_type", "test")
    return Event(**kw)


# -- built-in conditions: truth tables --------------------------------------------------------


@pytest.mark.parametrize(
    ("flt", "event", "expected"),
    [
        (Always(), ev(), True),
        (Never(), ev(), False),
        (WithEventType("test"), ev(), True),
        (WithEventType("other", "test"), ev(), True),
        (WithEventType("other"), ev(), False),
        (WithId("id-1"), ev(), True),
        (WithId("id-2"), ev(), False),
        (WithSender("alice"), ev(sender="alice"), True),
        (WithSender("alice"), ev(sender="bob"), False),
        (WithSender("alice"), ev(), False),
        (WithTag("a"), ev(tags=["b", "a"]), True),
        (WithTag("c", "d"), ev(tags=["a", "b"]), False),
        (WithTag("a"), ev(), False),
        (WithRecipients(["a", "b"]), ev(recipients=["b", "a"]), True),
        (WithRecipients(["a", "b"]), ev(recipients=["a"]), False),
        (WithRecipients(["a", "b"]), ev(recipients=["a", "b", "c"]), False),
        (WithRecipients(["a", "z"], mode="any"), ev(recipients=["a", "b"]), True),
        (WithRecipients(["y", "z"], mode="any"), ev(recipients=["a", "b"]), False),
        (WithRecipients(["a", "b"], mode="all"), ev(recipients=["a", "b", "c"]), True),
        (WithRecipients(["a", "d"], mode="all"), ev(recipients=["a", "b", "c"]), False),
        (WithRecipients("a", mode="any"), ev(recipients=["a"]), True),
        (BeforeDate(NOW), ev(timestamp=NOW - timedelta(seconds=1)), True),
        (BeforeDate(NOW), ev(timestamp=NOW), False),
        (BeforeDate(NOW), ev(timestamp=NOW + timedelta(seconds=1)), False),
        (AfterDate(NOW), ev(timestamp=NOW + timedelta(microseconds=1)), True),
        (AfterDate(NOW), ev(timestamp=NOW), False),
        (AfterDate(NOW), ev(timestamp=NOW - timedelta(days=1)), False),
        (Expired(NOW), ev(), False),
        (Expired(NOW), ev(expiration_datetime=NOW - timedelta(seconds=1)), True),
        (Expired(NOW), ev(expiration_datetime=NOW), True),
        (Expired(NOW), ev(expiration_datetime=NOW + timedelta(seconds=1)), False),
        (Expired(), ev(expiration_datetime=datetime.now(UTC) - timedelta(seconds=5)), True),
        (Expired(), ev(expiration_datetime=datetime.now(UTC) + timedelta(hours=1)), False),
        (Field("colour", "blue"), ev(colour="blue"), True),
        (Field("colour", "blue"), ev(colour="red"), False),
        (Field("colour", "blue"), ev(), False),
        (Field("count", lambda v: v > 3), ev(count=4), True),
        (Field("count", lambda v: v > 3), ev(count=2), False),
        (Field("recipients", ["a"]), ev(recipients=["a"]), True),
        (Field("sender", "s"), ev(sender="s"), True),
        (Field("meta", {"k": [1]}), ev(meta={"k": [1]}), True),
        (Predicate(lambda e: e["title"].startswith("x")), ev(title="xyz"), True),
        (Predicate(lambda e: e["title"].startswith("x")), ev(title="abc"), False),
    ],
)
def test_builtin_truth_table(flt: EventFilter, event: Event, expected: bool) -> None:
    assert flt.matches(event) is expected
    assert flt(event) is expected
    assert flt.check_event(event) is expected


# -- operators --------------------------------------------------------------------------------

T, F = Always(), Never()


@pytest.mark.parametrize(("a", "b"), [(T, T), (T, F), (F, T), (F, F)], ids=["TT", "TF", "FT", "FF"])
def test_operator_truth_tables(a: EventFilter, b: EventFilter) -> None:
    e = ev()
    x, y = a.matches(e), b.matches(e)
    assert (a & b).matches(e) is (x and y)
    assert (a | b).matches(e) is (x or y)
    assert (a ^ b).matches(e) is (x != y)
    assert (~a).matches(e) is (not x)
    assert Not(a).matches(e) is (not x)
    assert And(a, b).matches(e) is (x and y)
    assert Or(a, b).matches(e) is (x or y)
    assert Xor(a, b).matches(e) is (x != y)


@pytest.mark.parametrize("other", [True, 1, "x", None, lambda e: True])
def test_non_filter_operands_raise_type_error(other: object) -> None:
    for op in ("__and__", "__or__", "__xor__"):
        with pytest.raises(TypeError, match="EventFilter"):
            getattr(Always(), op)(other)
    with pytest.raises(TypeError):
        And(Always(), other)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Not(other)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _ = other & Always()  # type: ignore[operator]


def test_the_readme_filter() -> None:
    now = datetime.now(UTC)
    flt = WithEventType("test") & Not(BeforeDate(now))
    assert flt.matches(ev(timestamp=now + timedelta(seconds=1)))
    assert not flt.matches(ev(timestamp=now - timedelta(seconds=1)))
    assert not flt.matches(ev(event_type="other", timestamp=now + timedelta(seconds=1)))


def test_filters_are_immutable() -> None:
    flt = WithEventType("a")
    with pytest.raises(AttributeError):
        flt.values = ("b",)
    with pytest.raises(AttributeError):
        del flt.values


def test_structural_equality_and_hashing() -> None:
    assert WithEventType("a", "b") == WithEventType("a", "b")
    assert WithEventType("a") != WithEventType("b")
    assert WithEventType("a") != WithSender("a")
    assert Always() != Never()
    assert (WithEventType("a") & WithSender("b")) == And(WithEventType("a"), WithSender("b"))
    assert (WithTag("x") | WithTag("y")) != (WithTag("x") & WithTag("y"))
    assert WithRecipients(["a", "b"]) == WithRecipients(["b", "a"])
    assert WithRecipients(["a"], mode="any") != WithRecipients(["a"])
    assert Field("m", {"a": 1, "b": 2}) == Field("m", {"b": 2, "a": 1})
    assert BeforeDate(NOW) == BeforeDate(NOW.isoformat())
    assert BeforeDate(NOW) != AfterDate(NOW)
    fn = lambda e: True  # noqa: E731
    assert Predicate(fn) == Predicate(fn)
    assert Predicate(fn) != Predicate(lambda e: True)
    made = {WithEventType("a") & ~WithSender("b"), WithEventType("a") & ~WithSender("b")}
    assert len(made) == 1
    assert hash(Field("m", [1, 2])) == hash(Field("m", [1, 2]))


def test_nested_operators_flatten() -> None:
    a, b, c = WithTag("a"), WithTag("b"), WithTag("c")
    assert (a & b & c) == And(a, b, c) == And(a, And(b, c))
    assert (a | b | c).operands == (a, b, c)  # type: ignore[attr-defined]


def test_readable_repr() -> None:
    flt = WithEventType("test") & ~BeforeDate(NOW) | WithRecipients(["u1"], mode="any")
    assert repr(flt) == (
        "((WithEventType('test') & Not(BeforeDate('2025-06-01T12:00:00+00:00'))) "
        "| WithRecipients(['u1'], mode='any'))"
    )


def test_constructor_errors() -> None:
    with pytest.raises(TypeError, match="at least one"):
        WithEventType()
    with pytest.raises(TypeError, match="strings"):
        WithEventType(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mode"):
        WithRecipients(["a"], mode="some")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timezone-aware"):
        BeforeDate(datetime(2020, 1, 1))
    with pytest.raises(TypeError, match="at least two"):
        And(Always())
    with pytest.raises(TypeError, match="JSON value or a callable"):
        Field("x", object())
    with pytest.raises(TypeError, match="callable"):
        Predicate(3)  # type: ignore[arg-type]


# -- dict forms -------------------------------------------------------------------------------

SERIALISABLE = [
    Always(),
    Never(),
    WithEventType("a", "b"),
    WithId("x"),
    WithSender("s"),
    WithTag("t1", "t2"),
    WithRecipients(["u1", "u2"], mode="all"),
    BeforeDate(NOW),
    AfterDate(NOW),
    Expired(),
    Expired(NOW),
    Field("meta", {"k": [1, None]}),
    Not(WithTag("x")),
    WithTag("a") & WithTag("b") & ~(WithSender("c") ^ WithId("d")),
    Or(WithTag("a"), And(WithTag("b"), Never())),
]


@pytest.mark.parametrize("flt", SERIALISABLE, ids=repr)
def test_dict_round_trip(flt: EventFilter) -> None:
    data = flt.to_dict()
    assert json.loads(json.dumps(data)) == data, "the dict form must be plain JSON"
    assert filter_from_dict(data) == flt
    assert filter_from_dict(json.loads(json.dumps(data))) == flt


def test_code_filters_have_no_dict_form() -> None:
    for flt in (Predicate(lambda e: True), Field("x", lambda v: True)):
        with pytest.raises(InvalidFilter, match="no dict form"):
            flt.to_dict()
    with pytest.raises(InvalidFilter):
        (WithTag("a") & Predicate(lambda e: True)).to_dict()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("event_type", "must be a dict"),
        ({}, "'type' key"),
        ({"type": "evnt_type", "values": ["a"]}, "did you mean 'event_type'"),
        ({"type": "event_type"}, "needs the key 'values'"),
        ({"type": "event_type", "values": 3}, "list of strings"),
        ({"type": "event_type", "values": [3]}, "strings"),
        ({"type": "not"}, "needs the key 'filter'"),
        ({"type": "and", "filters": {"type": "always"}}, "must be a list"),
        ({"type": "and", "filters": [{"type": "always"}]}, "at least two"),
        ({"type": "before_date", "date": "someday"}, "ISO-8601"),
        ({"type": "recipients", "recipients": ["a"], "mode": "most"}, "mode"),
    ],
)
def test_invalid_dicts_raise_invalid_filter(data: Any, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        filter_from_dict(data)


def test_single_string_values_are_accepted_from_config() -> None:
    assert filter_from_dict({"type": "event_type", "values": "a"}) == WithEventType("a")


# -- algebra properties -----------------------------------------------------------------------

leaves = st.sampled_from(
    [Always(), Never(), WithEventType("test"), WithSender("alice"), WithTag("a"), WithId("nope")]
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(Not, children),
        st.builds(lambda a, b: a & b, children, children),
        st.builds(lambda a, b: a | b, children, children),
        st.builds(lambda a, b: a ^ b, children, children),
    ),
    max_leaves=12,
)
events = st.builds(
    lambda t, s, tags: ev(event_type=t, sender=s, tags=tags),
    st.sampled_from(["test", "other"]),
    st.sampled_from(["alice", "bob"]),
    st.lists(st.sampled_from(["a", "b"]), max_size=2),
)


def reference(flt: EventFilter, event: Event) -> bool:
    """Evaluate a tree with Python's own operators, independently of matches()."""
    if isinstance(flt, Not):
        return not reference(flt.operand, event)
    if isinstance(flt, And):
        return all(reference(o, event) for o in flt.operands)
    if isinstance(flt, Or):
        return any(reference(o, event) for o in flt.operands)
    if isinstance(flt, Xor):
        return sum(reference(o, event) for o in flt.operands) % 2 == 1
    leaf_truth = {
        Always(): True,
        Never(): False,
        WithEventType("test"): event.event_type == "test",
        WithSender("alice"): event.sender == "alice",
        WithTag("a"): "a" in event.tags,
        WithId("nope"): False,
    }
    return leaf_truth[flt]


@given(trees, events)
def test_trees_evaluate_like_python_booleans(flt: EventFilter, event: Event) -> None:
    assert flt.matches(event) is reference(flt, event)


@given(trees, trees, events)
def test_algebra_laws(a: EventFilter, b: EventFilter, event: Event) -> None:
    x, y = a.matches(event), b.matches(event)
    assert (~(a & b)).matches(event) is (~a | ~b).matches(event)  # De Morgan
    assert (~(a | b)).matches(event) is (~a & ~b).matches(event)
    assert (a ^ b).matches(event) is ((a & ~b) | (~a & b)).matches(event)
    assert (~~a).matches(event) is x
    assert (a & b).matches(event) is (b & a).matches(event) is (x and y)


@given(trees)
def test_trees_round_trip_through_dicts(flt: EventFilter) -> None:
    assert filter_from_dict(json.loads(json.dumps(flt.to_dict()))) == flt
