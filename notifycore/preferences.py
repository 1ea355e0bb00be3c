"""Notification preferences: per user, per event type (or hub) and per channel, on or off.

A user's preferences are a mapping ``{topic: {channel: bool}}``:

- a *topic* is an event type (``"comment.created"``), a hub (``"hub:<label>"``)
  or ``"*"`` (every event);
- a *channel* is a consumer's registered name (``"push"``, ``"mail"``...),
  ``"inbox"`` (keeping the event in the user's inbox) or ``"*"`` (every channel).

:func:`allows` decides one (event type, hub, channel) for one user: the most
specific entry wins — the event type before the hub before ``"*"``, and for
each of them the channel before ``"*"`` — first among the user's own
preferences, then among the application's defaults (the
``PREFERENCE_DEFAULTS`` setting, the same shape); with no entry at all, the
channel is on. An event whose ``critical`` field is true bypasses
preferences altogether (see :func:`is_critical`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from notifycore.errors import InvalidPreferences
from notifycore.event import Event

__all__ = [
    "ANY",
    "INBOX_CHANNEL",
    "MAX_ENTRIES",
    "MAX_NAME_LENGTH",
    "RESERVED_PREFIXES",
    "Preferences",
    "allows",
    "check_preferences",
    "hub_topic",
    "is_critical",
    "is_reserved_type",
]

#: The wildcard topic or channel.
ANY = "*"
#: The channel of keeping an event in the user's inbox.
INBOX_CHANNEL = "inbox"
#: The most (topic, channel) entries one user may set.
MAX_ENTRIES = 500
#: The longest topic or channel name.
MAX_NAME_LENGTH = 200

#: ``{topic: {channel: on}}``.
Preferences = Mapping[str, Mapping[str, bool]]


def hub_topic(label: str) -> str:
    """The topic that names every event a hub matched: ``"hub:<label>"``."""
    return f"hub:{label}"


#: Event types starting with these are notifycore's own (inbox changes, digest jobs): a web
#: client may not send them, and the centre never keeps them as inbox items.
RESERVED_PREFIXES = ("inbox.", "notifycore.")


def is_reserved_type(event_type: str) -> bool:
    """True for an event type notifycore reserves (see :data:`RESERVED_PREFIXES`)."""
    return event_type.startswith(RESERVED_PREFIXES)


def is_critical(event: Event) -> bool:
    """True when the event's ``critical`` field is ``true``: preferences do not apply to it."""
    # The one field read: event.extra would copy every extra field, deeply, to read it.
    return "critical" in event and event["critical"] is True


def _name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidPreferences(f"a {kind} must be a non-empty string, not {value!r:.80}")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidPreferences(f"a {kind} is at most {MAX_NAME_LENGTH} characters")
    if not value.isprintable():
        raise InvalidPreferences(f"a {kind} must not contain control characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidPreferences(f"a {kind} must be valid text (no lone surrogates)") from None
    return value


def check_preferences(value: Any) -> dict[str, dict[str, bool]]:
    """``value`` as preferences, or :class:`~notifycore.errors.InvalidPreferences` that says why.

    A mapping of topic to a mapping of channel to ``true``/``false``, at most
    :data:`MAX_ENTRIES` entries; names are non-empty printable text of at most
    :data:`MAX_NAME_LENGTH` characters.
    """
    if not isinstance(value, Mapping):
        raise InvalidPreferences(
            'preferences are an object {topic: {channel: true|false}}, e.g. {"*": {"mail": false}}'
        )
    checked: dict[str, dict[str, bool]] = {}
    entries = 0
    for topic, channels in value.items():
        topic = _name("topic", topic)
        if not isinstance(channels, Mapping):
            raise InvalidPreferences(
                f"the preferences of topic {topic!r:.80} are an object {{channel: true|false}}"
            )
        row: dict[str, bool] = {}
        for channel, on in channels.items():
            channel = _name("channel", channel)
            if not isinstance(on, bool):
                raise InvalidPreferences(
                    f"preference {topic!r:.80} / {channel!r:.80} must be true or false"
                )
            row[channel] = on
            entries += 1
            if entries > MAX_ENTRIES:
                raise InvalidPreferences(f"at most {MAX_ENTRIES} preferences per user")
        if not row:  # a topic without channels counts as one entry too: no unbounded maps
            entries += 1
            if entries > MAX_ENTRIES:
                raise InvalidPreferences(f"at most {MAX_ENTRIES} preferences per user")
        checked[topic] = row
    return checked


def _lookup(preferences: Preferences, topics: tuple[str, ...], channel: str) -> bool | None:
    for topic in topics:
        row = preferences.get(topic)
        if row is None:
            continue
        if channel in row:
            return row[channel]
        if ANY in row:
            return row[ANY]
    return None


def allows(
    user: Preferences | None,
    defaults: Preferences | None,
    *,
    event_type: str,
    hub: str | None,
    channel: str,
) -> bool:
    """Whether ``channel`` is on for an event of ``event_type`` matched by ``hub`` (see the module)."""
    topics = (event_type, hub_topic(hub), ANY) if hub is not None else (event_type, ANY)
    for preferences in (user, defaults):
        if preferences:
            found = _lookup(preferences, topics, channel)
            if found is not None:
                return found
    return True
