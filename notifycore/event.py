"""The Event: what an application sends, validated once and serialised once.

An Event reads like the dict it was in Flask-Notifications (``event["title"]``)
but is immutable, so the JSON made for the first consumer or broker is reused by
every other one.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from notifycore.errors import InvalidEvent

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "STANDARD_FIELDS", "Event"]

#: Default for the ``MAX_EVENT_SIZE`` setting: bytes of UTF-8 JSON.
DEFAULT_MAX_EVENT_SIZE: Final = 64 * 1024

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
_utc = UTC
_now = datetime.now
_uuid4 = uuid.uuid4
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _text(field: str, value: object, *, required: bool = False) -> str:
    if type(value) is str:  # the common case, kept cheap
        if required and not value:
            raise InvalidEvent(field, "must not be empty")
        return value
    if isinstance(value, str):
        return _text(field, str(value), required=required)
    if value is None and required:
        raise InvalidEvent(field, "is required")
    raise InvalidEvent(field, f"must be a string, not {type(value).__name__}")


def _datetime(field: str, value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(field, f"is not an ISO-8601 date and time: {value!r}") from None
    if not isinstance(value, datetime):
        raise InvalidEvent(
            field, f"must be a datetime or an ISO-8601 string, not {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEvent(field, "must be timezone-aware (for example datetime.now(UTC))")
    return value


def _strings(field: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        raise InvalidEvent(field, f"must be a list of strings, not a single {type(value).__name__}")
    if not isinstance(value, Iterable):
        raise InvalidEvent(field, f"must be a list of strings, not {type(value).__name__}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise InvalidEvent(field, f"must contain only strings, found {type(item).__name__}")
    return items


def _json_value(field: str, value: Any) -> Any:
    """Return ``value`` as JSON would give it back, or raise naming the field."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if value.bit_length() > 4000:  # JSON encoding refuses integers of 4300+ digits
            raise InvalidEvent(field, "is an integer too large for JSON")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEvent(field, f"{value!r} is not a JSON number")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(f"{field}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidEvent(field, f"has a key that is not a string: {k!r}")
            out[k] = _json_value(f"{field}.{k}", v)
        return out
    raise InvalidEvent(field, f"is not JSON-serialisable ({type(value).__name__})")


def _isoformat(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Event(Mapping[str, Any]):
    """One notification: who sent what, of which type, to whom.

    ``Event(event_id, event_type, title, body, timestamp=None, sender="",
    recipients=(), tags=(), expiration_datetime=None, **extra)``: an ``event_id``
    of ``None`` gives a random uuid4 string, a ``timestamp`` of ``None`` the
    current time in UTC. Extra keyword fields must be JSON values; they are
    kept, serialised and can be filtered on with
    :class:`~notifycore.filters.Field`.
    """

    __slots__ = (
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
    _json: str | None
    _json_bytes: bytes | None

    def __init__(
        self,
        event_id: str | None,
        event_type: str,
        title: str = "",
        body: str = "",
        timestamp: datetime | str | None = None,
        sender: str = "",
        recipients: Iterable[str] | None = (),
        tags: Iterable[str] | None = (),
        expiration_datetime: datetime | str | None = None,
        **extra: Any,
    ) -> None:
        if event_id is None:
            event_id = str(_uuid4())
        else:
            event_id = _text("event_id", event_id, required=True)
            if len(event_id) > _MAX_ID_LENGTH:
                raise InvalidEvent("event_id", f"is longer than {_MAX_ID_LENGTH} characters")
        s = object.__setattr__
        s(self, "event_id", event_id)
        # type(x) is str first: the common case skips a function call per field.
        if type(event_type) is not str or not event_type:
            event_type = _text("event_type", event_type, required=True)
        s(self, "event_type", event_type)
        s(self, "title", title if type(title) is str else _text("title", title))
        s(self, "body", body if type(body) is str else _text("body", body))
        s(self, "timestamp", _now(_utc) if timestamp is None else _datetime("timestamp", timestamp))
        s(self, "sender", sender if type(sender) is str else _text("sender", sender))
        s(self, "recipients", () if not recipients else _strings("recipients", recipients))
        s(self, "tags", () if not tags else _strings("tags", tags))
        s(
            self,
            "expiration_datetime",
            None
            if expiration_datetime is None
            else _datetime("expiration_datetime", expiration_datetime),
        )
        if extra:
            checked = {}
            for key, value in extra.items():
                if key.startswith("_"):
                    raise InvalidEvent(key, "extra field names must not start with '_'")
                checked[key] = _json_value(key, value)
            s(self, "_extra", checked)
        else:
            s(self, "_extra", {})
        s(self, "_json", None)
        s(self, "_json_bytes", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Event is immutable; use event.replace(...) for a changed copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Event is immutable")

    # -- mapping face, as when Event was a dict -------------------------------------------

    @property
    def extra(self) -> Mapping[str, Any]:
        """The extra fields (a copy: changing it does not change the event)."""
        return copy.deepcopy(self._extra)

    def __getitem__(self, key: str) -> Any:
        if key in _STANDARD:
            return getattr(self, key)
        value = self._extra[key]
        # Lists and dicts are copied, so the event (and its cached JSON) cannot be changed.
        return copy.deepcopy(value) if isinstance(value, (list, dict)) else value

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
            data.update(copy.deepcopy(self._extra))
        return data

    def to_json(self) -> str:
        """Compact JSON of :meth:`to_dict`; computed once and cached."""
        cached: str | None = self._json
        if cached is None:
            cached = _dumps(self.to_dict())
            object.__setattr__(self, "_json", cached)
        return cached

    def to_json_bytes(self) -> bytes:
        """:meth:`to_json` encoded as UTF-8, what backends store; encoded once and cached."""
        cached: bytes | None = self._json_bytes
        if cached is None:
            cached = self.to_json().encode()
            object.__setattr__(self, "_json_bytes", cached)
        return cached

    def json_size(self) -> int:
        """Size of the UTF-8 JSON in bytes, the measure ``MAX_EVENT_SIZE`` limits."""
        text = self.to_json()
        return len(text) if text.isascii() else len(text.encode())

    def check_size(self, limit: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        """Raise :class:`InvalidEvent` when the JSON form is larger than ``limit`` bytes."""
        size = self.json_size()
        if size > limit:
            raise InvalidEvent("event", f"is {size} bytes of JSON, over the limit of {limit}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Build an event from :meth:`to_dict`'s form (or the same keys with Python values)."""
        if not isinstance(data, Mapping):
            raise InvalidEvent("event", f"must be a JSON object, not {type(data).__name__}")
        if "event_type" not in data:
            raise InvalidEvent("event_type", "is required")
        fields = dict(data)
        fields.setdefault("event_id", None)
        for key in fields:
            if not isinstance(key, str):
                raise InvalidEvent("event", f"has a key that is not a string: {key!r}")
        if "self" in fields:
            raise InvalidEvent("self", "is not a valid field name")
        return cls(**fields)

    @classmethod
    def from_json(
        cls, data: str | bytes, *, max_size: int | None = DEFAULT_MAX_EVENT_SIZE
    ) -> Event:
        """Parse :meth:`to_json`'s output; ``max_size`` bytes at most (``None``: no limit)."""
        if isinstance(data, str):
            size = len(data) if data.isascii() else len(data.encode())
        elif isinstance(data, (bytes, bytearray, memoryview)):
            size = len(data)
        else:
            raise InvalidEvent("event", f"JSON must be str or bytes, not {type(data).__name__}")
        if max_size is not None and size > max_size:
            raise InvalidEvent("event", f"is {size} bytes of JSON, over the limit of {max_size}")
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent("event", f"is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidEvent("event", "is nested too deeply") from None
        return cls.from_dict(parsed)
