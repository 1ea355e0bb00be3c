"""The notification centre: every user's inbox and preferences, kept as events are delivered.

:class:`NotificationCentre` (``notifications.centre``) holds the store — the
backend when it offers the ``inboxes`` capability, else the companion store
that ``INBOX_BACKEND`` names — and the settings. The delivery layer asks it
which recipients want an event on each channel (:meth:`NotificationCentre.allowed`)
before a consumer runs or a job is queued, and keeps a delivered event in each
recipient's inbox (:meth:`NotificationCentre.keep`). :class:`Inbox`
(``notifications.inbox(user)``) is the API an application and the web routes
use. Every change is pushed on the user's own stream (``user:<id>``) as an
event of its own type (:data:`CHANGE_TYPES`), so every open tab follows it and
a reconnecting one catches up with ``Last-Event-ID``. ``docs/inbox.md`` tells
the whole story.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from notifycore import drivers
from notifycore.backends.base import Backend
from notifycore.backends.capabilities import Inboxes, KeyValueStore
from notifycore.backends.inboxes import ARCHIVED, READ, UNREAD, InboxChange, InboxRecord
from notifycore.consumers import user_stream
from notifycore.errors import ConfigurationError, InvalidEvent, InvalidInboxRequest
from notifycore.event import Event, check_user_id
from notifycore.preferences import (
    INBOX_CHANNEL,
    Preferences,
    allows,
    check_preferences,
    is_critical,
    is_reserved_type,
)

if TYPE_CHECKING:
    from notifycore.plugins import Plugins

__all__ = [
    "ALL_READ",
    "CHANGE_TYPES",
    "ITEMS_ARCHIVED",
    "ITEMS_READ",
    "ITEM_ADDED",
    "MAX_LIST",
    "Inbox",
    "InboxItem",
    "NotificationCentre",
]

#: A new item: ``{"inbox": {"item": <item>, "unread": n}}``.
ITEM_ADDED = "inbox.item"
#: Items marked read: ``{"inbox": {"ids": [...], "unread": n}}``.
ITEMS_READ = "inbox.read"
#: Everything (up to a cursor) marked read: ``{"inbox": {"up_to": cursor|null, "count": n, "unread": n}}``.
ALL_READ = "inbox.read_all"
#: Items archived: ``{"inbox": {"ids": [...], "unread": n}}``.
ITEMS_ARCHIVED = "inbox.archived"
#: The event types of inbox changes pushed on a user's stream.
CHANGE_TYPES = (ITEM_ADDED, ITEMS_READ, ALL_READ, ITEMS_ARCHIVED)
#: The largest page of :meth:`Inbox.list` (and its HTTP route).
MAX_LIST = 200
#: The most ids one call may name.
MAX_IDS = 1000
_MAX_ID_LENGTH = 512
_PREFERENCES_KEY = "nc:preferences:"


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One item of a user's inbox."""

    #: The event's ``event_id``.
    id: str
    #: Where it sits: pass it as ``before=`` for the page after it, or as ``up_to=``.
    cursor: str
    #: ``unread``, ``read`` or ``archived``.
    state: str
    #: When it was kept (UTC).
    added: datetime
    #: The event's JSON as it was sent.
    data: bytes

    @property
    def unread(self) -> bool:
        return self.state == UNREAD

    @property
    def event(self) -> Event:
        """The event (parsed from :attr:`data`)."""
        return Event.from_json(self.data)

    def to_json_bytes(self) -> bytes:
        """``{"id", "cursor", "state", "added", "event"}``, the event's JSON embedded as kept."""
        head = json.dumps(
            {
                "id": self.id,
                "cursor": self.cursor,
                "state": self.state,
                "added": self.added.isoformat(),
            },
            separators=(",", ":"),
        )
        return head[:-1].encode() + b',"event":' + self.data + b"}"

    def to_dict(self) -> dict[str, Any]:
        """The item as JSON values (the event as a dict)."""
        parsed: dict[str, Any] = json.loads(self.to_json_bytes())
        return parsed

    @classmethod
    def of(cls, record: InboxRecord) -> InboxItem:
        return cls(
            record.item_id,
            str(record.seq),
            record.state,
            datetime.fromtimestamp(record.added, UTC),
            record.data,
        )


def _user(user: Any) -> str:
    if isinstance(user, bool) or not isinstance(user, (str, int)):
        raise InvalidInboxRequest(f"a user id is a string, not {type(user).__name__}")
    try:
        # The one rule for user ids: whatever an event may name as a recipient.
        return check_user_id(str(user))
    except InvalidEvent as exc:
        raise InvalidInboxRequest(f"not a user id: {exc.message}") from None


def _ids(ids: Iterable[str] | str) -> list[str]:
    if isinstance(ids, (str, bytes)):
        ids = [ids]
    found = []
    for item_id in ids:
        if not isinstance(item_id, str) or not item_id or len(item_id) > _MAX_ID_LENGTH:
            raise InvalidInboxRequest(
                f"item ids are non-empty strings of at most {_MAX_ID_LENGTH} characters"
            )
        found.append(item_id)
        if len(found) > MAX_IDS:
            raise InvalidInboxRequest(f"at most {MAX_IDS} ids at once")
    return found


def _cursor(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        number = int(value)
    else:
        raise InvalidInboxRequest(f"{what} is a cursor an item gave (digits), not {value!r:.60}")
    if not 0 < number < 1 << 62:
        raise InvalidInboxRequest(f"{what} is out of range")
    return number


class NotificationCentre:
    """Inboxes and preferences for one ``Notifications`` (see the module)."""

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins
        self._backend: Backend | None = None
        self._store: Any = None
        self._companion: Backend | None = None
        self._why_off = "INBOX is off (set INBOX = 'on'; docs/inbox.md)"
        self.max_items = 1000
        self.max_age: float | None = None
        self.defaults: dict[str, dict[str, bool]] = {}

    def __repr__(self) -> str:
        return f"<NotificationCentre store={self._store!r}>"

    # -- configuration -----------------------------------------------------------------------

    def configure(self, settings: Mapping[str, Any], backend: Backend) -> None:
        """Take the settings and the main backend; find (or build) the store. A store that is
        needed and cannot be found is a :class:`ConfigurationError`, now."""
        mode = settings.get("INBOX", "off")
        self.max_items = settings.get("INBOX_MAX_ITEMS", 1000)
        self.max_age = settings.get("INBOX_MAX_AGE") or None
        defaults = settings.get("PREFERENCE_DEFAULTS")
        try:
            self.defaults = check_preferences(defaults or {})
        except ValueError as exc:
            raise ConfigurationError(f"PREFERENCE_DEFAULTS: {exc}") from None
        old = self._companion
        self._backend, self._store, self._companion = backend, None, None
        if old is not None:
            old.close()
        if mode == "off":
            self._why_off = "INBOX is off (set INBOX = 'on'; docs/inbox.md)"
            return
        name = settings.get("INBOX_BACKEND") or ""
        if isinstance(backend, Inboxes) and isinstance(backend, KeyValueStore) and not name:
            self._store = backend
            return
        if name:
            self._companion = self._build_companion(settings, name)
            self._store = self._companion
            return
        self._why_off = (
            f"the backend {backend!r} keeps no inboxes and no INBOX_BACKEND is set "
            "(a companion store such as INBOX_BACKEND = 'sqlite' or 'redis'; docs/inbox.md)"
        )
        if mode == "on":
            raise ConfigurationError(f"INBOX is on, but {self._why_off}")

    @staticmethod
    def _build_companion(settings: Mapping[str, Any], name: str) -> Backend:
        cls = drivers.resolve(drivers.BACKENDS, name)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise ConfigurationError(f"INBOX_BACKEND {name!r} names {cls!r}, not a Backend class")
        if not (issubclass(cls, Inboxes) and issubclass(cls, KeyValueStore)):
            raise ConfigurationError(
                f"INBOX_BACKEND {name!r} keeps no inboxes: use 'sqlite', 'redis' or 'memory'"
            )
        companion = {**settings, "BACKEND": name, "BACKEND_URL": settings.get("INBOX_BACKEND_URL")}
        store: Backend = cls.from_settings(companion)
        return store

    def close(self) -> None:
        companion, self._companion = self._companion, None
        if companion is not None:
            companion.close()

    @property
    def enabled(self) -> bool:
        """True when inboxes are kept (a store was found)."""
        return self._store is not None

    @property
    def store(self) -> Any:
        """The store (``Inboxes`` and ``KeyValueStore``); :class:`ConfigurationError` when off."""
        store = self._store
        if store is None:
            raise ConfigurationError(f"no inboxes: {self._why_off}")
        return store

    @property
    def filtering(self) -> bool:
        """Whether sends look at preferences at all (a store, or the app's own hook)."""
        return self._store is not None or self.plugins.implements("notifycore_load_preferences")

    # -- preferences -------------------------------------------------------------------------

    def preferences(self, user: str) -> dict[str, dict[str, bool]]:
        """``user``'s own preferences (the app's hook first, else the store)."""
        user = _user(user)
        if self.plugins.implements("notifycore_load_preferences"):
            found = self.plugins.load_preferences(user)
            if found is not None:
                return check_preferences(found)
        if self._store is None:
            return {}
        raw = self._store.kv_get(_PREFERENCES_KEY + user)
        return {} if raw is None else check_preferences(json.loads(raw))

    def set_preferences(self, user: str, preferences: Any) -> dict[str, dict[str, bool]]:
        """Replace ``user``'s preferences (checked first); the app's hook may store them."""
        user = _user(user)
        checked = check_preferences(preferences)
        if self.plugins.implements("notifycore_save_preferences") and self.plugins.save_preferences(
            user, checked
        ):
            return checked
        store = self.store
        store.kv_set(_PREFERENCES_KEY + user, json.dumps(checked, separators=(",", ":")).encode())
        return checked

    def allowed(self, event: Event) -> PreferenceCheck | None:
        """What the recipients of ``event`` want, asked once per send; None: everyone, everything."""
        if not event.recipients or is_critical(event) or not self.filtering:
            return None
        return PreferenceCheck(
            event, {r: self.preferences(r) for r in dict.fromkeys(event.recipients)}, self.defaults
        )

    # -- keeping -----------------------------------------------------------------------------

    def keep(
        self,
        event: Event,
        check: PreferenceCheck | None,
        backend: Backend,
        hubs: Sequence[str] = (),
    ) -> None:
        """Keep ``event`` in each recipient's inbox (those who did not turn the inbox off) and
        push an :data:`ITEM_ADDED` change on their stream (on ``backend``).

        ``hubs`` are the labels of the hubs that matched it: a recipient gets the item when
        the ``inbox`` channel is on for at least one of them (an event type's own entry
        decides for all of them). Reserved event types (``inbox.*``, ``notifycore.*``) are
        never kept."""
        store = self._store
        if store is None or not event.recipients or is_reserved_type(event.event_type):
            return
        data = event.to_json_bytes()
        labels: Sequence[str | None] = tuple(dict.fromkeys(hubs)) or (None,)
        for user in dict.fromkeys(event.recipients):
            if check is not None and not any(
                check.wants(user, label, INBOX_CHANNEL) for label in labels
            ):
                continue
            change = store.inbox_add(
                user, event.event_id, data, max_items=self.max_items, max_age=self.max_age
            )
            if change.seq:
                record = InboxRecord(event.event_id, change.seq, UNREAD, time.time(), data)
                item = InboxItem.of(record)
                payload = b'{"item":' + item.to_json_bytes() + b',"unread":%d}' % change.unread
                push(backend, user, ITEM_ADDED, payload)

    def inbox(self, user: Any, backend: Backend) -> Inbox:
        return Inbox(self, _user(user), backend)


class PreferenceCheck:
    """The preferences of one event's recipients, loaded once for a send."""

    __slots__ = ("_defaults", "_event_type", "_users")

    def __init__(
        self, event: Event, users: dict[str, dict[str, dict[str, bool]]], defaults: Preferences
    ) -> None:
        self._event_type = event.event_type
        self._users = users
        self._defaults = defaults

    def wants(self, user: str, hub: str | None, channel: str) -> bool:
        return allows(
            self._users.get(user),
            self._defaults,
            event_type=self._event_type,
            hub=hub,
            channel=channel,
        )

    def recipients(self, event: Event, hub: str, channel: str) -> tuple[str, ...]:
        """The recipients of ``event`` who want it from ``hub`` on ``channel``."""
        return tuple(r for r in dict.fromkeys(event.recipients) if self.wants(r, hub, channel))


def push(backend: Backend, user: str, event_type: str, inbox: bytes) -> None:
    """Publish an inbox change on ``user``'s stream: an event of ``event_type`` whose ``inbox``
    field is the JSON ``inbox``."""
    change = Event(None, event_type, recipients=[user], sender="notifycore")
    data = change.to_json_bytes()
    backend.append(user_stream(user), data[:-1] + b',"inbox":' + inbox + b"}")


class Inbox:
    """One user's inbox: ``notifications.inbox(user)``.

    Every method is one call to the store (listing, counting) or one atomic
    change that also publishes what changed on the user's stream.
    """

    def __init__(self, centre: NotificationCentre, user: str, backend: Backend) -> None:
        self.centre = centre
        self.user = user
        self._store: Any = centre.store
        self._backend = backend

    def __repr__(self) -> str:
        return f"<Inbox of {self.user!r}>"

    def list(
        self, *, before: str | int | None = None, limit: int = 50, archived: bool = False
    ) -> list[InboxItem]:
        """At most ``limit`` items (1 to :data:`MAX_LIST`) older than the cursor ``before``
        (None: from the newest), newest first; the archived ones with ``archived=True``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIST:
            raise InvalidInboxRequest(f"limit is an integer from 1 to {MAX_LIST}")
        records = self._store.inbox_list(
            self.user, before=_cursor(before, "before"), limit=limit, archived=bool(archived)
        )
        return [InboxItem.of(r) for r in records]

    def unread_count(self) -> int:
        """The number of unread items (a count kept with every change: one read)."""
        count: int = self._store.inbox_unread(self.user)
        return count

    def get(self, item_id: str) -> InboxItem | None:
        """The item with that id, in any state; None when the inbox does not hold it."""
        found = self._store.inbox_get(self.user, _ids([item_id]))
        return InboxItem.of(found[0]) if found else None

    def states(self, item_ids: Iterable[str]) -> dict[str, str]:
        """The state of each of these items the inbox holds (``unread``, ``read``, ``archived``);
        ids it does not hold (never kept, or gone with the retention) are left out."""
        return {r.item_id: r.state for r in self._store.inbox_get(self.user, _ids(item_ids))}

    def is_unread(self, item_id: str) -> bool:
        """True while the item with this (event) id is in the inbox and unread."""
        return self.states([item_id]).get(item_id) == UNREAD

    def mark_read(self, item_ids: Iterable[str] | str) -> InboxChange:
        """Mark these items read; pushes :data:`ITEMS_READ` when any changed."""
        change: InboxChange = self._store.inbox_mark_read(self.user, _ids(item_ids))
        if change.count:
            self._push(ITEMS_READ, {"ids": list(change.changed), "unread": change.unread})
        return change

    def mark_all_read(self, up_to: str | int | None = None) -> InboxChange:
        """Mark every unread item read, or those up to the cursor ``up_to`` (an item's
        ``cursor``: the newest item the user saw); pushes :data:`ALL_READ` when any changed."""
        cursor = _cursor(up_to, "up_to")
        change: InboxChange = self._store.inbox_mark_all_read(self.user, up_to=cursor)
        if change.count:
            up = None if cursor is None else str(cursor)
            self._push(ALL_READ, {"up_to": up, "count": change.count, "unread": change.unread})
        return change

    def archive(self, item_ids: Iterable[str] | str) -> InboxChange:
        """Archive these items (they leave the list and the unread count); pushes
        :data:`ITEMS_ARCHIVED` when any changed."""
        change: InboxChange = self._store.inbox_archive(self.user, _ids(item_ids))
        if change.count:
            self._push(ITEMS_ARCHIVED, {"ids": list(change.changed), "unread": change.unread})
        return change

    def _push(self, event_type: str, inbox: dict[str, Any]) -> None:
        push(
            self._backend, self.user, event_type, json.dumps(inbox, separators=(",", ":")).encode()
        )


# The states, for callers that compare them.
STATES = (UNREAD, READ, ARCHIVED)
