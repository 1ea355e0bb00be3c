"""The filter algebra: which events a hub (or one consumer) wants.

Filters are immutable values: they combine with ``&``, ``|``, ``^`` and ``~``
through one :meth:`EventFilter._combine`, compare and hash by structure, and
every built-in one except :class:`Predicate` converts to and from a plain dict
(``to_dict()`` / :func:`filter_from_dict`) so filters can come from
configuration files and travel to worker processes.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from notifycore.errors import InvalidFilter

__all__ = [
    "AfterDate",
    "Always",
    "And",
    "BeforeDate",
    "EventFilter",
    "Expired",
    "Field",
    "Never",
    "Not",
    "Or",
    "Predicate",
    "WithEventType",
    "WithId",
    "WithRecipients",
    "WithSender",
    "WithTag",
    "Xor",
    "filter_from_dict",
    "runs_app_code",
]

_REGISTRY: dict[str, type[EventFilter]] = {}
_MISSING = object()


class EventFilter:
    """Base of every filter: ``matches(event) -> bool`` and the boolean operators."""

    __slots__ = ("_hash",)
    _hash: int

    #: The ``type`` key of the dict form; ``None`` for filters that have none.
    kind: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class that names its own kind registers: a subclass of a built-in
        # inherits ``kind`` and must not take over the built-in's dict form.
        if cls.__dict__.get("kind") is not None:
            _REGISTRY[cls.kind] = cls  # type: ignore[index]

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True when ``event`` passes this filter."""
        raise NotImplementedError

    def __call__(self, event: Mapping[str, Any]) -> bool:
        return self.matches(event)

    # Flask-Notifications spelling.
    def check_event(self, event: Mapping[str, Any]) -> bool:
        """Same as :meth:`matches`."""
        return self.matches(event)

    # -- structure -------------------------------------------------------------------------

    def _key(self) -> tuple[Any, ...]:
        """The values that make two filters of one class equal."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, EventFilter)
        return self._key() == other._key()

    def __hash__(self) -> int:
        try:
            return self._hash
        except AttributeError:
            value = hash((type(self).__name__, self._key()))
            object.__setattr__(self, "_hash", value)
            return value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _init(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    # Immutable values: a copy is the filter itself; pickling rebuilds it from its slots.
    def __copy__(self) -> EventFilter:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> EventFilter:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        state = {}
        for klass in type(self).__mro__:
            for name in getattr(klass, "__slots__", ()):
                if name != "_hash" and hasattr(self, name):
                    state[name] = getattr(self, name)
        return (_restore, (type(self), state))

    # -- algebra ---------------------------------------------------------------------------

    def _combine(self, other: object, op: type[_Compound]) -> EventFilter:
        if not isinstance(other, EventFilter):
            raise TypeError(
                f"cannot combine {type(self).__name__} with {type(other).__name__}: "
                "both operands must be EventFilter instances"
            )
        return op(self, other)

    def __and__(self, other: object) -> EventFilter:
        return self._combine(other, And)

    def __or__(self, other: object) -> EventFilter:
        return self._combine(other, Or)

    def __xor__(self, other: object) -> EventFilter:
        return self._combine(other, Xor)

    def __invert__(self) -> EventFilter:
        return Not(self)

    # -- dict form -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON values only) that :func:`filter_from_dict` turns back."""
        raise InvalidFilter(f"{type(self).__name__} has no dict form")

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        raise InvalidFilter(f"{cls.__name__} has no dict form")


def _restore(cls: type[EventFilter], state: dict[str, Any]) -> EventFilter:
    flt = cls.__new__(cls)
    for name, value in state.items():
        object.__setattr__(flt, name, value)
    return flt


def _normal(value: Any) -> Any:
    """A value as JSON gives it back: tuples become lists, recursively."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``, ``[1]`` equals ``(1,)``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _values(name: str, values: Iterable[Any]) -> tuple[str, ...]:
    out = tuple(values)
    if not out:
        raise TypeError(f"{name} needs at least one value")
    for value in out:
        if not isinstance(value, str):
            raise TypeError(f"{name} values must be strings, not {type(value).__name__}")
    return out


def _require(data: Mapping[str, Any], key: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise InvalidFilter(f"filter {data.get('type')!r} needs the key {key!r}") from None


def _date(value: datetime | str, what: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFilter(f"{what}: not an ISO-8601 date and time: {value!r}") from None
    if not isinstance(value, datetime):
        raise TypeError(f"{what} needs a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise TypeError(f"{what} needs a timezone-aware datetime")
    return value


def filter_from_dict(data: Mapping[str, Any]) -> EventFilter:
    """Turn the output of ``EventFilter.to_dict()`` back into the filter."""
    if not isinstance(data, Mapping):
        raise InvalidFilter(f"a filter must be a dict, not {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise InvalidFilter(f"a filter dict needs a string 'type' key, got {data!r}")
    cls = _REGISTRY.get(kind)
    if cls is None:
        message = f"unknown filter type {kind!r} (known: {', '.join(sorted(_REGISTRY))})"
        close = difflib.get_close_matches(kind, _REGISTRY, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        raise InvalidFilter(message)
    try:
        return cls._from_dict(data)
    except TypeError as exc:
        raise InvalidFilter(f"filter {kind!r}: {exc}") from None


# -- constants ---------------------------------------------------------------------------


class _Constant(EventFilter):
    __slots__ = ()

    def _key(self) -> tuple[Any, ...]:
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        return cls()


class Always(_Constant):
    """Every event passes."""

    __slots__ = ()
    kind = "always"

    def matches(self, event: Mapping[str, Any]) -> bool:
        return True


class Never(_Constant):
    """No event passes."""

    __slots__ = ()
    kind = "never"

    def matches(self, event: Mapping[str, Any]) -> bool:
        return False


# -- operators ---------------------------------------------------------------------------


class Not(EventFilter):
    """The negation of one filter."""

    __slots__ = ("operand",)
    kind = "not"
    operand: EventFilter

    def __init__(self, operand: EventFilter) -> None:
        if not isinstance(operand, EventFilter):
            raise TypeError(f"Not() needs an EventFilter, not {type(operand).__name__}")
        self._init(operand=operand)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return not self.operand.matches(event)

    def _key(self) -> tuple[Any, ...]:
        return (self.operand,)

    def __repr__(self) -> str:
        return f"Not({self.operand!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "filter": self.operand.to_dict()}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        return cls(filter_from_dict(_require(data, "filter")))


class _Compound(EventFilter):
    """Two or more operands; nested operators of the same class are flattened."""

    __slots__ = ("operands",)
    operands: tuple[EventFilter, ...]
    _symbol: ClassVar[str] = ""

    def __init__(self, *operands: EventFilter) -> None:
        flat: list[EventFilter] = []
        for operand in operands:
            if not isinstance(operand, EventFilter):
                raise TypeError(
                    f"{type(self).__name__}() needs EventFilter operands, "
                    f"not {type(operand).__name__}"
                )
            if type(operand) is type(self):
                assert isinstance(operand, _Compound)
                flat.extend(operand.operands)
            else:
                flat.append(operand)
        if len(flat) < 2:
            raise TypeError(f"{type(self).__name__}() needs at least two filters")
        self._init(operands=tuple(flat))

    def _key(self) -> tuple[Any, ...]:
        return self.operands

    def __repr__(self) -> str:
        return "(" + f" {self._symbol} ".join(repr(o) for o in self.operands) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "filters": [o.to_dict() for o in self.operands]}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        items = _require(data, "filters")
        if not isinstance(items, list):
            raise InvalidFilter(f"filter {cls.kind!r}: 'filters' must be a list")
        return cls(*(filter_from_dict(item) for item in items))


class And(_Compound):
    """Passes when every operand passes."""

    __slots__ = ()
    kind = "and"
    _symbol = "&"

    def matches(self, event: Mapping[str, Any]) -> bool:
        for operand in self.operands:
            if not operand.matches(event):
                return False
        return True


class Or(_Compound):
    """Passes when any operand passes."""

    __slots__ = ()
    kind = "or"
    _symbol = "|"

    def matches(self, event: Mapping[str, Any]) -> bool:
        for operand in self.operands:
            if operand.matches(event):
                return True
        return False


class Xor(_Compound):
    """Passes when an odd number of operands pass (for two: exactly one)."""

    __slots__ = ()
    kind = "xor"
    _symbol = "^"

    def matches(self, event: Mapping[str, Any]) -> bool:
        result = False
        for operand in self.operands:
            if operand.matches(event):
                result = not result
        return result


# -- built-in conditions -------------------------------------------------------------------


class _OneOf(EventFilter):
    """The event's ``field`` equals one of the values."""

    __slots__ = ("values",)
    values: tuple[str, ...]
    field: ClassVar[str] = ""

    def __init__(self, *values: str) -> None:
        self._init(values=_values(type(self).__name__, values))

    def matches(self, event: Mapping[str, Any]) -> bool:
        return event[self.field] in self.values

    def _key(self) -> tuple[Any, ...]:
        return self.values

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(v) for v in self.values)})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "values": list(self.values)}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        values = _require(data, "values")
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list):
            raise InvalidFilter(f"filter {cls.kind!r}: 'values' must be a list of strings")
        return cls(*values)


class WithEventType(_OneOf):
    """The event's type is one of the given types."""

    __slots__ = ()
    kind = "event_type"
    field = "event_type"


class WithId(_OneOf):
    """The event's id is one of the given ids."""

    __slots__ = ()
    kind = "event_id"
    field = "event_id"


class WithSender(_OneOf):
    """The event's sender is one of the given senders."""

    __slots__ = ()
    kind = "sender"
    field = "sender"


class WithTag(_OneOf):
    """The event carries at least one of the given tags."""

    __slots__ = ()
    kind = "tag"
    field = "tags"

    def matches(self, event: Mapping[str, Any]) -> bool:
        tags = event["tags"]
        for value in self.values:
            if value in tags:
                return True
        return False


RecipientsMode = Literal["exact", "any", "all"]


class WithRecipients(EventFilter):
    """Compare the event's recipients with a set.

    ``mode="exact"``: the same set; ``"any"``: at least one in common;
    ``"all"``: the event reaches every one of them (and maybe others).
    """

    __slots__ = ("mode", "recipients")
    kind = "recipients"
    recipients: frozenset[str]
    mode: RecipientsMode

    def __init__(self, recipients: Iterable[str], mode: RecipientsMode = "exact") -> None:
        if isinstance(recipients, str):
            recipients = [recipients]
        values = frozenset(_values("WithRecipients", recipients))
        if mode not in ("exact", "any", "all"):
            raise TypeError(f"WithRecipients mode must be 'exact', 'any' or 'all', not {mode!r}")
        self._init(recipients=values, mode=mode)

    def matches(self, event: Mapping[str, Any]) -> bool:
        got = event["recipients"]
        if self.mode == "any":
            return not self.recipients.isdisjoint(got)
        if self.mode == "all":
            return self.recipients.issubset(got)
        return self.recipients == frozenset(got)

    def _key(self) -> tuple[Any, ...]:
        return (self.recipients, self.mode)

    def __repr__(self) -> str:
        return f"WithRecipients({sorted(self.recipients)!r}, mode={self.mode!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "recipients": sorted(self.recipients), "mode": self.mode}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        return cls(_require(data, "recipients"), data.get("mode", "exact"))


class BeforeDate(EventFilter):
    """The event's timestamp is strictly earlier than ``date``."""

    __slots__ = ("date",)
    kind = "before_date"
    date: datetime

    def __init__(self, date: datetime | str) -> None:
        self._init(date=_date(date, type(self).__name__))

    def matches(self, event: Mapping[str, Any]) -> bool:
        return bool(event["timestamp"] < self.date)

    def _key(self) -> tuple[Any, ...]:
        return (self.date,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.date.isoformat()!r})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "date": self.date.isoformat()}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        return cls(_require(data, "date"))


class AfterDate(BeforeDate):
    """The event's timestamp is strictly later than ``date``."""

    __slots__ = ()
    kind = "after_date"

    def matches(self, event: Mapping[str, Any]) -> bool:
        return bool(event["timestamp"] > self.date)


class Expired(EventFilter):
    """The event has an expiration date and it has passed (at ``now``, default: the present)."""

    __slots__ = ("now",)
    kind = "expired"
    now: datetime | None

    def __init__(self, now: datetime | str | None = None) -> None:
        self._init(now=None if now is None else _date(now, "Expired"))

    def matches(self, event: Mapping[str, Any]) -> bool:
        expiration = event["expiration_datetime"]
        if expiration is None:
            return False
        now = self.now if self.now is not None else datetime.now(UTC)
        return bool(expiration <= now)

    def _key(self) -> tuple[Any, ...]:
        return (self.now,)

    def __repr__(self) -> str:
        return "Expired()" if self.now is None else f"Expired({self.now.isoformat()!r})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind}
        if self.now is not None:
            data["now"] = self.now.isoformat()
        return data

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        return cls(data.get("now"))


class Field(EventFilter):
    """A field (standard or extra) equals ``value``, or satisfies it when it is callable.

    An event without the field never passes. With a callable the filter has no
    dict form, like :class:`Predicate`.
    """

    __slots__ = ("name", "value")
    kind = "field"
    name: str
    value: Any

    def __init__(self, name: str, value: Any) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("Field needs a non-empty field name")
        if not callable(value):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                raise TypeError(
                    f"Field value must be a JSON value or a callable, not {type(value).__name__}"
                ) from None
            value = _normal(value)
        self._init(name=name, value=value)

    def matches(self, event: Mapping[str, Any]) -> bool:
        value = event.get(self.name, _MISSING)
        if value is _MISSING:
            return False
        if callable(self.value):
            return bool(self.value(value))
        return _same(value, self.value)

    def _key(self) -> tuple[Any, ...]:
        if callable(self.value):
            return (self.name, self.value)
        return (self.name, json.dumps(self.value, sort_keys=True))

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.value!r})"

    def to_dict(self) -> dict[str, Any]:
        if callable(self.value):
            raise InvalidFilter(f"{self!r} tests with code and has no dict form")
        return {"type": self.kind, "name": self.name, "value": self.value}

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        return cls(_require(data, "name"), _require(data, "value"))


class Predicate(EventFilter):
    """Any callable ``event -> bool``; equal only to a Predicate of the same callable."""

    __slots__ = ("function",)
    function: Callable[[Mapping[str, Any]], Any]

    def __init__(self, function: Callable[[Mapping[str, Any]], Any]) -> None:
        if not callable(function):
            raise TypeError(f"Predicate needs a callable, not {type(function).__name__}")
        self._init(function=function)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return bool(self.function(event))

    def _key(self) -> tuple[Any, ...]:
        return (self.function,)

    def __repr__(self) -> str:
        name = getattr(self.function, "__qualname__", repr(self.function))
        return f"Predicate({name})"

    def to_dict(self) -> dict[str, Any]:
        raise InvalidFilter(f"{self!r} holds code and has no dict form")


def runs_app_code(event_filter: EventFilter) -> bool:
    """Whether matching ``event_filter`` may call the application's code, which could block:
    a :class:`Predicate`, a :class:`Field` with a callable, or a filter class of its own."""
    if type(event_filter).__module__ != __name__ or isinstance(event_filter, Predicate):
        return True
    if isinstance(event_filter, Field):
        return callable(event_filter.value)
    if isinstance(event_filter, Not):
        return runs_app_code(event_filter.operand)
    if isinstance(event_filter, _Compound):
        return any(runs_app_code(operand) for operand in event_filter.operands)
    return False
