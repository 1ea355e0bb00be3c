"""Digests: a user's events within a window become one delivery that lists them.

:class:`DigestConsumer` wraps any consumer (a mail consumer first of all).
Registered on a hub in its place, it keeps each event it gets for each
recipient in the backend, and when the recipient's window closes — a period
(``every=3600``: on the hour) or a daily time in the user's time zone
(``daily_at="08:00"``) — hands the wrapped consumer *one* event, of type
``digest``, that lists them. It is **unread-aware**: an item the user read
(or archived) in their inbox before the digest fires is left out, and a
digest with nothing left is not sent at all.

Everything lives in the backend (or the inbox's companion store), never in
memory: the items of each open window, and a delayed job on the queue that
fires it. So a digest survives a worker's restart like any queued job, and
is delivered at least once: a flush that fails (the SMTP server is down) is
retried by the worker with back-off, and one whose worker dies is handed to
another. ``docs/inbox.md`` ("Digests") tells the whole story.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import secrets
import time as _time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as clock
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifycore.backends.capabilities import Counters, require_counters
from notifycore.consumers import Binding, Consumer, FunctionConsumer
from notifycore.errors import ConfigurationError
from notifycore.event import Event
from notifycore.jobs import encode_job

if TYPE_CHECKING:
    from notifycore.hub import Hub, Registration
    from notifycore.notifications import Notifications

__all__ = ["DIGEST_TYPE", "FLUSH_TYPE", "DigestConsumer"]

logger = logging.getLogger("notifycore.digest")

#: The event type of the one event a digest hands the wrapped consumer.
DIGEST_TYPE = "digest"
#: The event type of the queued job that fires a window (internal; never sent by hand).
FLUSH_TYPE = "notifycore.digest.flush"
_DAY = 86_400.0
#: How long a window's keys outlive the window: a worker that was down this long still finds
#: them; and how long an event is remembered as taken (so a retried send adds it once).
_KEEP = 7 * _DAY
#: The most ids one inbox call may name.
_CHUNK = 500

Zone = str | tzinfo | None
TimeZones = str | tzinfo | Mapping[str, str] | Callable[[str], Zone]


def _zone(value: Zone) -> tzinfo:
    if value is None:
        return UTC
    if isinstance(value, tzinfo):
        return value
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"unknown time zone {value!r} (an IANA name: 'Europe/Paris')"
        ) from None


def _clock(value: str | clock) -> clock:
    if isinstance(value, clock):
        return value.replace(tzinfo=None)
    try:
        hour, minute = value.split(":")
        return clock(int(hour), int(minute))
    except (ValueError, AttributeError):
        raise ConfigurationError(f"daily_at is a time of day as 'HH:MM', not {value!r}") from None


class DigestConsumer(Consumer):
    """Collects each recipient's events and hands ``consumer`` one digest per window.

    ``notifications`` is the :class:`~notifycore.Notifications` it is registered
    with (its backend keeps the windows and queues the job that fires each;
    its inboxes say what is still unread). Give exactly one window:

    - ``every``: seconds (or a ``timedelta``); windows are aligned on the epoch
      (``every=3600`` fires on the hour, ``every=86400`` at midnight UTC);
    - ``daily_at``: ``"HH:MM"`` (or a ``datetime.time``) in each user's time
      zone — ``timezone`` is one IANA name for everyone, a mapping of users to
      names, or a callable ``user -> name | tzinfo | None`` (``None``: UTC); an
      unknown name falls back to UTC, with a warning.

    The digest event is of type :data:`DIGEST_TYPE`, for the one user: its
    ``title`` says how many (``title`` is a ``str.format`` template over
    ``count``), its ``body`` lists the first ``max_listed`` titles one a line,
    and its ``digest`` field holds ``{"count", "until", "items": [{"id",
    "event_type", "title", "body", "sender", "timestamp"}, ...]}``. A mail
    consumer's default templates (``{title}``, ``{body}``) mail it as it is.

    ``grace`` seconds after a window closes, the job fires it. Events without
    recipients are not kept (a digest is per user). Register it queued or
    inline; either way its firing jobs go to its registration's queue (or
    ``DEFAULT_QUEUE``), which a worker must drain.
    """

    def __init__(
        self,
        consumer: Consumer | Callable[[Event], Any],
        notifications: Notifications,
        *,
        every: float | timedelta | None = None,
        daily_at: str | clock | None = None,
        timezone: TimeZones = "UTC",
        title: str = "{count} unread notifications",
        max_listed: int = 50,
        grace: float = 1.0,
    ) -> None:
        if (every is None) == (daily_at is None):
            raise ConfigurationError("a digest needs exactly one window: every= or daily_at=")
        if every is not None:
            seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
            if not math.isfinite(seconds) or seconds < 1:
                raise ConfigurationError(f"every is at least one second, not {every!r}")
            self.every: float | None = seconds
            self.daily_at: clock | None = None
        else:
            assert daily_at is not None
            self.every, self.daily_at = None, _clock(daily_at)
        if not isinstance(consumer, Consumer):
            consumer = FunctionConsumer(consumer)
        self.consumer = consumer
        self.notifications = notifications
        self._timezone = timezone
        if isinstance(timezone, str | tzinfo):
            self._fixed_zone: tzinfo | None = _zone(timezone)
        elif isinstance(timezone, Mapping) or callable(timezone):
            self._fixed_zone = None
        else:
            raise ConfigurationError(
                f"timezone is a name, a tzinfo, a mapping or a callable, not {timezone!r}"
            )
        try:
            title.format(count=0)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ConfigurationError(
                f"title is a str.format template over {{count}} only, not {title!r} ({exc!r})"
            ) from None
        self.title = title
        if not isinstance(max_listed, int) or max_listed < 1:
            raise ConfigurationError(f"max_listed is a positive integer, not {max_listed!r}")
        self.max_listed = max_listed
        self.grace = float(grace)
        self._hub: Hub | None = None

    def __repr__(self) -> str:
        window = f"every={self.every:g}" if self.every else f"daily_at={self.daily_at:%H:%M}"
        return f"DigestConsumer({self.consumer!r}, {window})"

    # -- the wrapped consumer's life ---------------------------------------------------------

    def bind(self, binding: Binding) -> None:
        self._hub = binding.hub
        self._store()  # no store: a ConfigurationError at registration, not on the first event
        self.consumer.bind(binding)

    def unbind(self, binding: Binding) -> None:
        self.consumer.unbind(binding)

    def close(self) -> None:
        self.consumer.close()

    # -- windows -----------------------------------------------------------------------------

    def zone_of(self, user: str) -> tzinfo:
        """``user``'s time zone (UTC when unknown)."""
        if self._fixed_zone is not None:
            return self._fixed_zone
        source = self._timezone
        try:
            found = source.get(user) if isinstance(source, Mapping) else source(user)  # type: ignore[operator]
            return _zone(found)
        except ConfigurationError as exc:
            logger.warning("digest for %r: %s; using UTC", user, exc)
            return UTC

    def fire_time(self, user: str, after: float) -> float:
        """When the window holding the instant ``after`` (epoch seconds) closes, for ``user``."""
        if self.every is not None:
            return (math.floor(after / self.every) + 1) * self.every
        assert self.daily_at is not None
        zone = self.zone_of(user)
        day: date = datetime.fromtimestamp(after, zone).date()
        for offset in range(3):  # today, or tomorrow (a skipped local time: the day after)
            fire = datetime.combine(day + timedelta(days=offset), self.daily_at, zone).timestamp()
            if fire > after:
                return fire
        raise AssertionError("a daily time comes within three days")  # pragma: no cover

    # -- the store ---------------------------------------------------------------------------

    def _store(self) -> Counters:
        centre = self.notifications.centre
        if centre.enabled:
            store: Counters = require_counters(centre.store, "a digest")
            return store
        return require_counters(self.notifications.backend, "a digest (or INBOX = 'on')")

    def _registration(self) -> tuple[Hub, Registration]:
        hub = self._hub
        if hub is not None:
            for registration in hub.registrations:
                if registration.consumer is self:
                    return hub, registration
        raise ConfigurationError(f"{self!r} is not registered on a hub")

    def _prefix(self, hub: Hub, registration: Registration, user: str) -> str:
        name = json.dumps([hub.label, registration.name, user]).encode()
        return "nc:digest:" + hashlib.sha256(name).hexdigest()[:32] + ":"

    # -- consuming ---------------------------------------------------------------------------

    def consume(self, event: Event) -> Any:
        if event.event_type == FLUSH_TYPE and event.sender == "notifycore":
            return self._flush(event)
        if not event.recipients:
            logger.debug("digest: event %s has no recipients; a digest is per user", event.event_id)
            return None
        hub, registration = self._registration()
        store = self._store()
        data = event.to_json_bytes()
        for user in dict.fromkeys(event.recipients):
            self._add(store, hub, registration, user, event.event_id, data)
        return None

    def _add(
        self,
        store: Counters,
        hub: Hub,
        registration: Registration,
        user: str,
        event_id: str,
        data: bytes,
    ) -> None:
        """Keep one event for one user in their open window, and make sure it will fire."""
        prefix = self._prefix(hub, registration, user)
        taken = prefix + "taken:" + event_id
        if store.kv_exists(taken):  # a retried send or job: it is in a window already
            return
        now = _time.time()
        fire = self.fire_time(user, now)
        for _ in range(8):
            window = f"{prefix}{fire:.0f}:"
            if not store.kv_exists(window + "closed"):
                ttl = max(fire - now, 0) + _KEEP
                store.kv_set(window + "item:" + event_id, data, ttl=ttl)
                index = store.kv_incr(window + "n")
                store.kv_set(window + f"i:{index}", event_id.encode(), ttl=ttl)
                # Checked after writing: a flush that closed the window before this check
                # may have read past it, so the event goes to the next window too (at least
                # once); one that closes it later reads it.
                if not store.kv_exists(window + "closed"):
                    break
            fire = self.fire_time(user, fire)
        else:
            raise RuntimeError(f"digest: no open window for {user!r} after eight tries")
        self._schedule(store, hub, registration, user, window, fire, now)
        store.kv_set(taken, b"1", ttl=(fire - now) + _KEEP)

    def _schedule(
        self,
        store: Counters,
        hub: Hub,
        registration: Registration,
        user: str,
        window: str,
        fire: float,
        now: float,
    ) -> None:
        """Queue the job that fires ``window`` unless one is queued (one more is harmless)."""
        ttl = max(fire - now, 0) + _KEEP
        nonce = secrets.token_hex(16).encode()
        if not store.kv_set_if_absent(window + "nonce", nonce, ttl=ttl):
            nonce = store.kv_get(window + "nonce") or nonce
        if store.kv_exists(window + "queued"):
            return
        self._enqueue(hub, registration, user, fire, nonce, max(fire - now, 0.0) + self.grace)
        store.kv_set(window + "queued", b"1", ttl=ttl)

    def _enqueue(
        self,
        hub: Hub,
        registration: Registration,
        user: str,
        fire: float,
        nonce: bytes,
        delay: float,
    ) -> None:
        flush = Event(
            None,
            FLUSH_TYPE,
            recipients=[user],
            sender="notifycore",
            digest_flush={"window": f"{fire:.0f}", "nonce": nonce.decode()},
        )
        queue = registration.queue or self.notifications.settings["DEFAULT_QUEUE"]
        self.notifications.backend.enqueue(
            queue, encode_job(hub.label, registration.name, flush.to_json_bytes()), delay=delay
        )

    def fire_now(self, user: str) -> bool:
        """Fire ``user``'s open window now (a "send my digest now" button): queues its job
        without delay; False when the user has no open window. Items that arrive after it
        fired go to the next window."""
        hub, registration = self._registration()
        store = self._store()
        fire = self.fire_time(user, _time.time())
        for _ in range(8):  # the window now, or after it those a fired one sent events on to
            window = f"{self._prefix(hub, registration, user)}{fire:.0f}:"
            if not store.kv_exists(window + "closed"):
                nonce = store.kv_get(window + "nonce")
                if nonce is None:
                    return False
                self._enqueue(hub, registration, user, fire, nonce, 0.0)
                return True
            fire = self.fire_time(user, fire)
        return False

    # -- firing ------------------------------------------------------------------------------

    def _flush(self, job: Event) -> Any:
        """Fire one user's window: the unread items, as one digest event, to the consumer."""
        spec = job.extra.get("digest_flush")
        if not isinstance(spec, dict) or len(job.recipients) != 1:
            logger.warning("digest: ignored a malformed firing job %s", job.event_id)
            return None
        user = job.recipients[0]
        hub, registration = self._registration()
        store = self._store()
        window = f"{self._prefix(hub, registration, user)}{spec.get('window')}:"
        nonce = store.kv_get(window + "nonce")
        if nonce is None or not secrets.compare_digest(nonce, str(spec.get("nonce")).encode()):
            logger.warning("digest: ignored a firing job %s for no open window", job.event_id)
            return None
        if store.kv_exists(window + "done"):
            return None  # fired already: this is a duplicate job
        ttl = _KEEP
        store.kv_set_if_absent(window + "closed", b"1", ttl=ttl)
        count = int(store.kv_get(window + "n") or b"0")
        ids: list[str] = []
        for index in range(1, count + 1):
            found = store.kv_get(window + f"i:{index}")
            if found is not None:
                ids.append(found.decode())
        ids = list(dict.fromkeys(ids))
        ids = self._unread(user, ids)
        events: list[Event] = []
        for event_id in ids:
            data = store.kv_get(window + "item:" + event_id)
            if data is not None:
                events.append(Event.from_json(data))
        if not events:
            logger.info("digest for %r: nothing unread, nothing sent", user)
            self._done(store, window, ids, count)
            return None
        digest = self.digest_event(user, events, float(spec.get("window") or 0))
        consumer = self.consumer
        try:
            consumer.before_consume(digest)
            returned = consumer.consume(digest)
        except Exception as error:
            consumer.on_error(digest, error)
            raise
        if returned is not None and inspect.isawaitable(returned):

            async def finish() -> None:
                try:
                    await returned
                except Exception as error:
                    consumer.on_error(digest, error)
                    raise
                consumer.after_consume(digest)
                self._done(store, window, ids, count)

            return finish()
        consumer.after_consume(digest)
        self._done(store, window, ids, count)
        return None

    def _unread(self, user: str, ids: list[str]) -> list[str]:
        """``ids`` less those ``user`` read or archived in the inbox (all, without inboxes)."""
        if not self.notifications.centre.enabled or not ids:
            return ids
        inbox = self.notifications.inbox(user)
        states: dict[str, str] = {}
        for start in range(0, len(ids), _CHUNK):
            states.update(inbox.states(ids[start : start + _CHUNK]))
        # Not in the inbox (the user keeps none for this, or the retention dropped it): unread.
        return [i for i in ids if states.get(i, "unread") == "unread"]

    @staticmethod
    def _done(store: Counters, window: str, ids: Iterable[str], count: int) -> None:
        store.kv_set(window + "done", b"1", ttl=_KEEP)
        for event_id in ids:
            store.kv_delete(window + "item:" + event_id)
        for index in range(1, count + 1):
            store.kv_delete(window + f"i:{index}")
        store.kv_delete(window + "n")

    def digest_event(self, user: str, events: list[Event], until: float) -> Event:
        """The one event a window becomes, for ``user`` (see the class)."""
        listed = events[: self.max_listed]
        lines = [
            f"- {e.title or e.event_type}" + (f" ({e.sender})" if e.sender else "") for e in listed
        ]
        if len(events) > len(listed):
            lines.append(f"... and {len(events) - len(listed)} more")
        items = [
            {
                "id": e.event_id,
                "event_type": e.event_type,
                "title": e.title,
                "body": e.body,
                "sender": e.sender,
                "timestamp": e.timestamp.isoformat(),
            }
            for e in listed
        ]
        return Event(
            None,
            DIGEST_TYPE,
            self.title.format(count=len(events)),
            "\n".join(lines),
            recipients=[user],
            sender="notifycore",
            digest={
                "count": len(events),
                "until": datetime.fromtimestamp(until, UTC).isoformat(),
                "items": items,
            },
        )
