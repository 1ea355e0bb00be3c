"""The Event: what an application sends, validated once and serialised once.

An Event reads like the dict it was in Flask-Notifications (``event["title"]``)
but is immutable, so the JSON made for the first consumer or broker is reused by
every other one.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any, Final

from notifycore.errors import InvalidEvent

__all__ = [
    "DEFAULT_MAX_EVENT_DEPTH",
    "DEFAULT_MAX_EVENT_SIZE",
    "EVENT_DEPTH_CEILING",
    "STANDARD_FIELDS",
    "Event",
    "check_user_id",
    "json_accelerator",
    "loads_json",
    "new_event_id",
    "parse_event_json",
    "use_json_accelerator",
]

#: Default for the ``MAX_EVENT_SIZE`` setting: bytes of UTF-8 JSON.
DEFAULT_MAX_EVENT_SIZE: Final = 64 * 1024
#: Default for the ``MAX_EVENT_DEPTH`` setting: levels of lists and objects in one field.
DEFAULT_MAX_EVENT_DEPTH: Final = 32
#: The deepest any event may nest, whatever ``MAX_EVENT_DEPTH`` says: ``Event(...)`` refuses
#: more, so that copying, encoding and comparing a field never come near Python's recursion limit.
EVENT_DEPTH_CEILING: Final = 128

#: The fields every event has, in wire order; anything else is an extra field.
STANDARD_FIELDS: Final = (
    "event_id",
    "event_type",
    "title",
    "body",
    "timestamp",
    "sender",
    "recipients",
    "tags",
    "expiration_datetime",
)
_STANDARD = frozenset(STANDARD_FIELDS)
_MAX_ID_LENGTH: Final = 256
# C0 and C1 control characters: never part of a user id (a stream name, a log line).
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_utc = UTC
_now = datetime.now
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

# -- JSON: the standard library, or orjson when it is installed (``notifycore[speed]``) --------
# orjson makes the same bytes as _dumps for what it is given here (strings, lists of strings,
# null: events without extra fields, whose numbers could be written differently) and parses
# to the same values what it parses at all, but for one thing: it reads an integer beyond 64
# bits as a float. So a parse that holds any float is done again by the standard library; so
# is text orjson refuses, and the standard library says what is wrong with it, as it would
# without orjson.

#: Set to 0 (or false, no, off) to leave orjson unused although installed.
ACCELERATOR_ENV: Final = "NOTIFYCORE_JSON_ACCELERATOR"
try:
    import orjson as _installed_orjson
except ImportError:  # pragma: no cover - depends on the environment
    _installed_orjson = None  # type: ignore[assignment]
_orjson: Any = (
    _installed_orjson
    if os.environ.get(ACCELERATOR_ENV, "").strip().lower() not in ("0", "false", "no", "off")
    else None
)


def json_accelerator() -> str | None:
    """``"orjson"`` when events are encoded and parsed with orjson, None for the standard library."""
    return None if _orjson is None else "orjson"


def use_json_accelerator(enabled: bool) -> bool:
    """Use orjson (when installed) or the standard library from now on; returns the previous
    choice. Both give the same JSON and the same values: tests run each way."""
    global _orjson
    before = _orjson is not None
    _orjson = _installed_orjson if enabled else None
    return before


def _holds_float(value: Any) -> bool:
    """Whether a parsed JSON value has a float anywhere in it (iterative: no depth limit)."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
    return False


def loads_json(data: str | bytes, *, numbers: bool = True) -> Any:
    """``json.loads(data)``, faster with orjson: the same values, the same errors.

    ``numbers=False``, for a caller that reads no number of it (an SSE frame's event
    type): the parse is not walked for floats, so an integer beyond 64 bits may come
    back as a float.
    """
    accelerator = _orjson
    if accelerator is not None:
        try:
            value = accelerator.loads(data)
        except accelerator.JSONDecodeError:
            pass  # the standard library decides, and says why in its own words
        else:
            if not numbers or not _holds_float(value):  # a float may be a big integer
                return value
    return json.loads(data)


# -- event ids ----------------------------------------------------------------------------
# A UUID version 7 (RFC 9562) text: 48 bits of Unix time in milliseconds, then 74 random
# bits. The random bits come from os.urandom, as uuid4's do, but many ids' worth at a time:
# a pool of hex digits (_IDS_PER_POOL ids) and a counter, replaced together when used up.

_IDS_PER_POOL: Final = 256
_HEX_PER_ID: Final = 19  # 3 (rand_a) + 1 (the variant's digit) + 15 (rand_b)
# The variant digit (10xx in binary) from any random hex digit: two random bits kept.
_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_time_ns = time.time_ns
_urandom = os.urandom
_count = itertools.count


def _new_pool() -> tuple[str, Iterator[int]]:
    return _urandom((_IDS_PER_POOL * _HEX_PER_ID + 1) // 2).hex(), _count()


# One tuple, read once per id, so that a thread that refills it never mixes its digits with
# another thread's position; itertools.count hands each position out once (it holds the GIL).
_pool = _new_pool()
# The formatted time part of the last millisecond an id was made in (ms, "xxxxxxxx-xxxx-7").
_prefix: tuple[int, str] = (-1, "")


def _forget_pool() -> None:
    """In a forked child: draw new random digits, never the parent's (which it would repeat)."""
    global _pool
    _pool = _new_pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def new_event_id() -> str:
    """A new unique event id: a UUID version 7 string, ordered by its millisecond.

    ``"0190a6f2-8c3e-7b1d-9f27-4a5e0c9d3b61"``: the first 48 bits are the Unix
    time in milliseconds (ids sort by creation time, to the millisecond), the
    other 74 are random (``os.urandom``), so ids stay unique across processes
    and machines and cannot be guessed from earlier ones.
    """
    global _pool, _prefix
    pool = _pool
    position = next(pool[1])
    if position >= _IDS_PER_POOL:
        pool = _pool = _new_pool()
        position = next(pool[1])
    milliseconds = _time_ns() // 1_000_000
    prefix = _prefix
    if prefix[0] != milliseconds:
        stamp = f"{milliseconds:012x}"
        prefix = _prefix = (milliseconds, f"{stamp[:8]}-{stamp[8:]}-7")
    digits = pool[0]
    k = position * _HEX_PER_ID
    return (
        f"{prefix[1]}{digits[k : k + 3]}-{_VARIANT[digits[k + 3]]}{digits[k + 4 : k + 7]}-"
        f"{digits[k + 7 : k + 19]}"
    )


def _printable(name: str, limit: int = 64) -> str:
    """``name`` fit for an error message: lone surrogates escaped, at most ``limit`` characters."""
    if not name.isascii():
        name = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _describe(value: object) -> str:
    """A short repr for an error message (never the whole of a huge value)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not replace the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _utf8(field: str, value: str, what: str = "") -> str:
    """``value`` if UTF-8 can encode it; a lone surrogate (``"\\ud800"``) is refused."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidEvent(
                field,
                f"{what}contains a lone surrogate (U+{ord(value[exc.start]):04X}), "
                "which is not valid Unicode text",
            ) from None
    return value


def _text(field: str, value: object, *, required: bool = False) -> str:
    if type(value) is str:
        if required and not value:
            raise InvalidEvent(field, "must not be empty")
        return _utf8(field, value)
    if isinstance(value, str):
        return _text(field, str.__str__(value), required=required)
    if value is None and required:
        raise InvalidEvent(field, "is required")
    raise InvalidEvent(field, f"must be a string, not {type(value).__name__}")


def _datetime(field: str, value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(
                field, f"is not an ISO-8601 date and time: {_describe(value)}"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidEvent(
            field, f"must be a datetime or an ISO-8601 string, not {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent(field, "must be timezone-aware (for example datetime.now(UTC))")
    return value


def _strings(field: str, value: object) -> tuple[str, ...]:
    """A list of strings: a list or tuple (all JSON gives), or from Python any other iterable.

    A string, bytes or a mapping is refused (a dict's keys are never taken
    for the list); a set is stored sorted, so the same set gives the same JSON.
    """
    if value is None:
        return ()
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        raise InvalidEvent(field, f"must be a list of strings, not a single {type(value).__name__}")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise InvalidEvent(field, f"must be a list of strings, not {_a(type(value).__name__)}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise InvalidEvent(field, f"must contain only strings, found {type(item).__name__}")
        _utf8(field, item)
    if any(type(item) is not str for item in items):
        items = tuple(str.__str__(item) for item in items)
    if isinstance(value, AbstractSet):
        items = tuple(sorted(items))
    return items


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _recipients(value: object) -> tuple[str, ...]:
    """User ids, each naming a stream ``user:<id>``: not empty, not padded, no control character."""
    items = _strings("recipients", value)
    for item in items:
        if not item:
            raise InvalidEvent("recipients", "must not contain an empty id")
        if len(item) > _MAX_ID_LENGTH:
            raise InvalidEvent("recipients", f"ids are at most {_MAX_ID_LENGTH} characters")
        if item != item.strip():
            raise InvalidEvent(
                "recipients", f"ids must not start or end with whitespace: {_describe(item)}"
            )
        if _CONTROL.search(item):
            raise InvalidEvent(
                "recipients", f"ids must not contain control characters: {_describe(item)}"
            )
    return items


def check_user_id(value: str) -> str:
    """``value`` if it may name a recipient (the one rule for user ids: the inbox, preferences
    and digests use it too): :class:`InvalidEvent` for ``recipients`` otherwise."""
    return _recipients((value,))[0]


def _empty(value: object) -> bool:
    return value is None or (type(value) in (tuple, list) and not value)


def _json_scalar(field: str, value: Any) -> Any:
    """``value`` as JSON would give it back, if it is a JSON scalar; else raise naming the field."""
    kind = type(value)
    if kind is str:
        return _utf8(field, value)
    if value is None or kind is bool:
        return value
    if isinstance(value, int):
        if value.bit_length() > 4000:  # JSON encoding refuses integers of 4300+ digits
            raise InvalidEvent(field, "is an integer too large for JSON")
        return value if kind is int else int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(field, f"{value!r} is not a JSON number")
        return value if kind is float else float(value)
    if isinstance(value, str):  # a subclass (an enum, a marker): stored as the text JSON gives back
        return _utf8(field, str.__str__(value))
    raise InvalidEvent(field, f"is not JSON-serialisable ({kind.__name__})")


_CONTAINERS = (list, tuple, dict)


def _json_container(top: str, path: str, value: Any, level: int) -> tuple[Any, int]:
    """A JSON copy of a list or dict and how deeply it nests; raise naming the field.

    ``top`` is the event's field (what a depth error names), ``path`` where in
    it ``value`` sits (what a type error names), ``level`` the depth of ``value``.
    """
    if level > EVENT_DEPTH_CEILING:
        raise InvalidEvent(top, f"is nested more than {EVENT_DEPTH_CEILING} levels deep")
    deepest = level
    if isinstance(value, dict):
        out: Any = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise InvalidEvent(path, f"has a key that is not a string: {_describe(key)}")
                key = str.__str__(key)
            _utf8(path, key, "has a key that ")
            where = f"{path}.{_printable(key)}"
            if isinstance(item, _CONTAINERS):
                out[key], depth = _json_container(top, where, item, level + 1)
                deepest = max(deepest, depth)
            else:
                out[key] = _json_scalar(where, item)
    else:
        out = []
        for index, item in enumerate(value):
            if isinstance(item, _CONTAINERS):
                copied, depth = _json_container(top, f"{path}[{index}]", item, level + 1)
                deepest = max(deepest, depth)
                out.append(copied)
            else:
                out.append(_json_scalar(f"{path}[{index}]", item))
    return out, deepest


def _copy(value: Any) -> Any:
    """A copy of a checked JSON value (deep for lists and dicts, which are all it holds)."""
    if type(value) is list:
        return [_copy(item) for item in value]
    if type(value) is dict:
        return {key: _copy(item) for key, item in value.items()}
    return value


def _isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# For Event._size_bound: a character of text is at most six bytes of JSON (``\\u001f``; an
# astral character is four bytes of UTF-8); the rest of an event without extra fields is its
# keys and punctuation, and two dates of at most 42 characters (an offset with microseconds).
_WORST: Final = 6
_FIXED_JSON: Final = len(
    _dumps(
        {
            "event_id": "",
            "event_type": "",
            "title": "",
            "body": "",
            "timestamp": "x" * 42,
            "sender": "",
            "recipients": [],
            "tags": [],
            "expiration_datetime": "x" * 42,
        }
    )
)


#: The default of ``recipients`` and ``tags`` (the empty tuple), known without a check.
_EMPTY: tuple[str, ...] = ()
#: The extra fields of an event that has none (never changed: events copy what they hand out).
_NO_EXTRA: dict[str, Any] = {}


class Event(Mapping[str, Any]):
    """One notification: who sent what, of which type, to whom.

    ``Event(event_id, event_type, title, body, timestamp=None, sender="",
    recipients=(), tags=(), expiration_datetime=None, **extra)``: an ``event_id``
    of ``None`` gives a new unique, time-ordered UUID string (:func:`new_event_id`),
    a ``timestamp`` of ``None`` the current time in UTC. Extra keyword fields
    must be JSON values; they are kept, serialised and can be filtered on with
    :class:`~notifycore.filters.Field`.
    """

    __slots__ = (
        "_deepest",
        "_depth",
        "_extra",
        "_json",
        "_json_bytes",
        "body",
        "event_id",
        "event_type",
        "expiration_datetime",
        "recipients",
        "sender",
        "tags",
        "timestamp",
        "title",
    )

    event_id: str
    event_type: str
    title: str
    body: str
    timestamp: datetime
    sender: str
    recipients: tuple[str, ...]
    tags: tuple[str, ...]
    expiration_datetime: datetime | None
    _extra: dict[str, Any]
    _depth: int
    _deepest: str
    _json: str | None
    _json_bytes: bytes | None

    def __init__(
        self,
        /,
        event_id: str | None,
        event_type: str,
        title: str = "",
        body: str = "",
        timestamp: datetime | str | None = None,
        sender: str = "",
        recipients: Iterable[str] | None = _EMPTY,
        tags: Iterable[str] | None = _EMPTY,
        expiration_datetime: datetime | str | None = None,
        **extra: Any,
    ) -> None:
        if event_id is None:
            event_id = new_event_id()
        else:
            event_id = _text("event_id", event_id, required=True)
            if len(event_id) > _MAX_ID_LENGTH:
                raise InvalidEvent("event_id", f"is longer than {_MAX_ID_LENGTH} characters")
        # type(x) is str (and ASCII, so valid UTF-8) first: the common case skips a call per field.
        if type(event_type) is not str or not event_type or not event_type.isascii():
            event_type = _text("event_type", event_type, required=True)
        if type(title) is not str or not title.isascii():
            title = _text("title", title)
        if type(body) is not str or not body.isascii():
            body = _text("body", body)
        if type(sender) is not str or not sender.isascii():
            sender = _text("sender", sender)
        # The defaults (the empty tuple) first; any other value is checked (an empty dict too).
        if recipients is not _EMPTY:
            recipients = () if _empty(recipients) else _recipients(recipients)
        if tags is not _EMPTY:
            tags = () if _empty(tags) else _strings("tags", tags)
        # The slots are set through their descriptors: __setattr__ refuses every change.
        _set_event_id(self, event_id)
        _set_event_type(self, event_type)
        _set_title(self, title)
        _set_body(self, body)
        _set_timestamp(self, _now(_utc) if timestamp is None else _datetime("timestamp", timestamp))
        _set_sender(self, sender)
        _set_recipients(self, recipients)
        _set_tags(self, tags)
        _set_expiration_datetime(
            self,
            None
            if expiration_datetime is None
            else _datetime("expiration_datetime", expiration_datetime),
        )
        _set_json(self, None)
        _set_json_bytes(self, None)
        if not extra:
            _set_extra(self, _NO_EXTRA)
            _set_depth(self, 0)
            _set_deepest(self, "")
            return
        checked: dict[str, Any] = {}
        deepest, deepest_field = 0, ""
        for key, value in extra.items():
            if key.startswith("_") or not key:
                raise InvalidEvent(
                    _printable(key) or "event",
                    "extra field names must not be empty or start with '_'",
                )
            if key == "self":  # positional-only above, so it arrives here rather than clashing
                raise InvalidEvent("self", "is not a valid field name")
            if not key.isascii():
                _utf8(_printable(key), key, "the field name ")
            if isinstance(value, _CONTAINERS):
                checked[key], depth = _json_container(key, key, value, 1)
                if depth > deepest:
                    deepest, deepest_field = depth, key
            else:
                checked[key] = _json_scalar(key, value)
        _set_extra(self, checked)
        _set_depth(self, deepest)
        _set_deepest(self, deepest_field)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Event is immutable; use event.replace(...) for a changed copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Event is immutable")

    # -- mapping face, as when Event was a dict -------------------------------------------

    @property
    def extra(self) -> Mapping[str, Any]:
        """The extra fields (a copy: changing it does not change the event)."""
        copied: dict[str, Any] = _copy(self._extra)
        return copied

    def __getitem__(self, key: str) -> Any:
        if key in _STANDARD:
            return getattr(self, key)
        value = self._extra[key]
        # Lists and dicts are copied, so the event (and its cached JSON) cannot be changed.
        return _copy(value)

    def __iter__(self) -> Iterator[str]:
        yield from STANDARD_FIELDS
        yield from self._extra

    def __len__(self) -> int:
        return len(STANDARD_FIELDS) + len(self._extra)

    def __contains__(self, key: object) -> bool:
        return key in _STANDARD or key in self._extra

    def __repr__(self) -> str:
        return (
            f"Event(event_id={self.event_id!r}, event_type={self.event_type!r}, "
            f"title={self.title!r}, sender={self.sender!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event.from_dict, (self.to_dict(),))

    # -- conversions ----------------------------------------------------------------------

    def replace(self, **changes: Any) -> Event:
        """A copy with some fields changed (a new ``event_id`` only if you pass one)."""
        fields: dict[str, Any] = {name: getattr(self, name) for name in STANDARD_FIELDS}
        fields.update(self._extra)
        fields.update(changes)
        return Event(**fields)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: JSON values only, dates as ISO-8601 strings."""
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "title": self.title,
            "body": self.body,
            "timestamp": self.timestamp.isoformat(),
            "sender": self.sender,
            "recipients": list(self.recipients),
            "tags": list(self.tags),
            "expiration_datetime": _isoformat(self.expiration_datetime),
        }
        if self._extra:
            data.update(_copy(self._extra))
        return data

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`; computed once and cached."""
        cached: str | None = self._json
        if cached is None:
            encoded = self._json_bytes
            if encoded is None and _orjson is not None and not self._extra:
                encoded = _orjson.dumps(self.to_dict())
                _set_json_bytes(self, encoded)
            cached = _dumps(self.to_dict()) if encoded is None else encoded.decode()
            _set_json(self, cached)
        return cached

    def to_json_bytes(self) -> bytes:
        """:meth:`to_json` encoded as UTF-8, what backends store; encoded once and cached."""
        cached: bytes | None = self._json_bytes
        if cached is None:
            if _orjson is not None and not self._extra:
                cached = _orjson.dumps(self.to_dict())
            else:
                cached = self.to_json().encode()
            _set_json_bytes(self, cached)
        return cached

    def json_size(self) -> int:
        """Size of the UTF-8 JSON in bytes, the measure ``MAX_EVENT_SIZE`` limits."""
        encoded = self._json_bytes
        if encoded is not None:
            return len(encoded)
        text = self.to_json()
        return len(text) if text.isascii() else len(text.encode())

    def check_size(self, limit: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        """Raise :class:`InvalidEvent` when the JSON form is larger than ``limit`` bytes.

        The JSON is made only when it is needed: an event without extra fields whose
        text could not reach ``limit`` bytes even if every character took six is let
        through uncounted (a send to inline consumers alone never encodes it).
        """
        if self._json is None and not self._extra and self._size_bound() <= limit:
            return
        size = self.json_size()
        if size > limit:
            raise InvalidEvent("event", f"is {size} bytes of JSON, over the limit of {limit}")

    def check_limits(
        self, max_size: int = DEFAULT_MAX_EVENT_SIZE, max_depth: int = DEFAULT_MAX_EVENT_DEPTH
    ) -> None:
        """:meth:`check_depth` then :meth:`check_size`: what ``send()`` checks of every event."""
        if self._depth > max_depth:
            self.check_depth(max_depth)
        if self._json is None and not self._extra and self._size_bound() <= max_size:
            return
        self.check_size(max_size)

    def _size_bound(self) -> int:
        """An upper bound of :meth:`json_size` for an event without extra fields, uncounted."""
        bound = _FIXED_JSON + _WORST * (
            len(self.event_id)
            + len(self.event_type)
            + len(self.title)
            + len(self.body)
            + len(self.sender)
        )
        for items in (self.recipients, self.tags):
            for item in items:
                bound += _WORST * len(item) + 3  # quotes and a comma
        return bound

    def check_depth(self, limit: int = DEFAULT_MAX_EVENT_DEPTH) -> None:
        """Raise :class:`InvalidEvent` naming the field nested deeper than ``limit`` levels.

        A field's depth counts its lists and objects: ``[1]`` is 1, ``{"a": [1]}`` 2.
        """
        if self._depth > limit:
            raise InvalidEvent(
                _printable(self._deepest),
                f"is nested {self._depth} levels deep, over the limit of {limit}",
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, max_depth: int | None = None) -> Event:
        """Build an event from :meth:`to_dict`'s form (or the same keys with Python values).

        ``max_depth`` bounds how deeply a field may nest (``None``: only the
        :data:`EVENT_DEPTH_CEILING` every event respects).
        """
        if not isinstance(data, Mapping):
            raise InvalidEvent("event", f"must be a JSON object, not {type(data).__name__}")
        if "event_type" not in data:
            raise InvalidEvent("event_type", "is required")
        if type(data) is dict and "event_id" in data:
            fields: Mapping[str, Any] = data  # parsed JSON: ** copies it, and keys are strings
        else:
            fields = dict(data)
            fields.setdefault("event_id", None)
        try:
            event = cls(**fields)
        except TypeError:
            for key in fields:
                if not isinstance(key, str):
                    raise InvalidEvent(
                        "event", f"has a key that is not a string: {_describe(key)}"
                    ) from None
            raise
        if max_depth is not None:
            event.check_depth(max_depth)
        return event

    @classmethod
    def from_json(
        cls,
        data: str | bytes,
        *,
        max_size: int | None = DEFAULT_MAX_EVENT_SIZE,
        max_depth: int | None = DEFAULT_MAX_EVENT_DEPTH,
    ) -> Event:
        """Parse :meth:`to_json`'s output; ``max_size`` bytes at most, fields nested
        ``max_depth`` levels at most (``None``: no size limit, the depth ceiling only)."""
        return cls.from_dict(parse_event_json(data, max_size=max_size), max_depth=max_depth)


def _slot_setter(name: str) -> Any:
    return Event.__dict__[name].__set__


_set_event_id = _slot_setter("event_id")
_set_event_type = _slot_setter("event_type")
_set_title = _slot_setter("title")
_set_body = _slot_setter("body")
_set_timestamp = _slot_setter("timestamp")
_set_sender = _slot_setter("sender")
_set_recipients = _slot_setter("recipients")
_set_tags = _slot_setter("tags")
_set_expiration_datetime = _slot_setter("expiration_datetime")
_set_extra = _slot_setter("_extra")
_set_depth = _slot_setter("_depth")
_set_deepest = _slot_setter("_deepest")
_set_json = _slot_setter("_json")
_set_json_bytes = _slot_setter("_json_bytes")


def parse_event_json(
    data: str | bytes | bytearray | memoryview, *, max_size: int | None = DEFAULT_MAX_EVENT_SIZE
) -> dict[str, Any]:
    """The JSON object an event is sent as, parsed but not yet checked as an event.

    What a web endpoint reads from a request body: :class:`InvalidEvent` (field
    ``event``) for more than ``max_size`` bytes, invalid UTF-8 or JSON, nesting
    deeper than the parser can follow, or JSON that is not an object.
    """
    if isinstance(data, str):
        size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
    elif isinstance(data, (bytes, bytearray, memoryview)):
        size = len(data)
    else:
        raise InvalidEvent("event", f"JSON must be str or bytes, not {type(data).__name__}")
    if max_size is not None and size > max_size:
        raise InvalidEvent("event", f"is {size} bytes of JSON, over the limit of {max_size}")
    if not isinstance(data, str):
        try:  # UTF-8 only (RFC 8259), not the UTF-16 or -32 that json.loads would guess
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(
                "event", f"is not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    try:
        parsed = loads_json(data)
    except ValueError as exc:
        raise InvalidEvent("event", f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidEvent(
            "event", f"is nested too deeply (fields may nest {EVENT_DEPTH_CEILING} levels at most)"
        ) from None
    if not isinstance(parsed, dict):
        raise InvalidEvent("event", f"must be a JSON object, not {type(parsed).__name__}")
    return parsed
