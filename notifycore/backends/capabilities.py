"""Optional capabilities: small protocols a backend may offer beside streams and queues.

A backend offers a capability by having its methods; code that needs one asks
with :func:`require` (or :func:`require_claims`...), which answers with a
:class:`~notifycore.ConfigurationError` naming the backend and the capability
when it is missing — at configuration time, never as a failure half-way
through a job. The contract suite (``notifycore.testing.contract``) checks
every capability a backend offers, and that a backend without one refuses it
clearly.

Each capability adds a little to the one before, so a broker offers as much as
it can do atomically:

- :class:`Claims` — keys claimed once, each with an optional time to live:
  :meth:`~Claims.kv_set_if_absent`, :meth:`~Claims.kv_exists`,
  :meth:`~Claims.kv_delete`. De-duplication (``dedupe=True``) claims
  ``(event, hub, consumer)`` after a consumer succeeded; a read mark is a claim.
- :class:`KeyValueStore` — claims whose values can also be read and replaced
  (:meth:`~KeyValueStore.kv_get`, :meth:`~KeyValueStore.kv_set`): per-user
  state such as an inbox's read-up-to watermark.
- :class:`Counters` — values that count atomically
  (:meth:`~Counters.kv_incr`): an unread count that stays right under
  concurrent senders and readers, read in O(1) with ``kv_get``.

Beside them, :class:`Inboxes` (``notifycore.backends.inboxes``): per-user
inboxes with read state and an exact unread count, for the notification
centre (``docs/inbox.md``).

Keys are strings, values bytes, ``ttl`` seconds (``None``: until deleted; a
backend may document a longest life). An expired key is absent everywhere.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from notifycore.backends.inboxes import Inboxes
from notifycore.errors import ConfigurationError

__all__ = [
    "CAPABILITIES",
    "Claims",
    "Counters",
    "Inboxes",
    "KeyValueStore",
    "capabilities",
    "require",
    "require_claims",
    "require_counters",
    "require_inboxes",
    "require_key_value",
]


@runtime_checkable
class Claims(Protocol):
    """Keys claimed once, shared like the backend's streams and queues."""

    def kv_set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (or expired); True when it was stored.

        Atomic across processes: of several concurrent calls for one key, one wins.
        """
        ...

    def kv_exists(self, key: str) -> bool:
        """True when ``key`` is there and not expired."""
        ...

    def kv_delete(self, key: str) -> bool:
        """Remove ``key``; True when it was there."""
        ...


@runtime_checkable
class KeyValueStore(Claims, Protocol):
    """Claims whose values can be read and replaced."""

    def kv_get(self, key: str) -> bytes | None:
        """The value of ``key``; None when it is absent or expired."""
        ...

    def kv_set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing any value and its ttl."""
        ...


@runtime_checkable
class Counters(KeyValueStore, Protocol):
    """A key-value store whose values can be counted atomically."""

    def kv_incr(self, key: str, amount: int = 1) -> int:
        """Add ``amount`` (may be negative) to the count under ``key`` (absent: 0); the new count.

        Atomic across processes. The count reads back with ``kv_get`` as ASCII
        digits (``b"-3"``); it keeps no ttl.
        """
        ...


#: Every optional capability, by the name the documentation and the contract suite use.
CAPABILITIES: dict[str, Any] = {
    "claims": Claims,
    "key-value store": KeyValueStore,
    "counters": Counters,
    "inboxes": Inboxes,
}


def capabilities(backend: object) -> list[str]:
    """The names of the optional capabilities ``backend`` offers."""
    return [name for name, protocol in CAPABILITIES.items() if isinstance(backend, protocol)]


def require(backend: object, capability: str, needed_for: str) -> Any:
    """``backend`` when it offers ``capability`` (a name in :data:`CAPABILITIES`), else a
    :class:`ConfigurationError` that says what needed it and what the backend offers."""
    if isinstance(backend, CAPABILITIES[capability]):
        return backend
    offering = ", ".join(capabilities(backend)) or "none"
    raise ConfigurationError(
        f"{needed_for} needs a backend that offers {capability}, and {backend!r} does not "
        f"(its optional capabilities: {offering}); docs/backends.md lists the backends "
        "that offer one"
    )


def require_claims(backend: object, needed_for: str) -> Claims:
    """``backend`` as :class:`Claims`, or :class:`ConfigurationError`."""
    store: Claims = require(backend, "claims", needed_for)
    return store


def require_key_value(backend: object, needed_for: str) -> KeyValueStore:
    """``backend`` as a :class:`KeyValueStore`, or :class:`ConfigurationError`."""
    store: KeyValueStore = require(backend, "key-value store", needed_for)
    return store


def require_counters(backend: object, needed_for: str) -> Counters:
    """``backend`` as :class:`Counters`, or :class:`ConfigurationError`."""
    store: Counters = require(backend, "counters", needed_for)
    return store


def require_inboxes(backend: object, needed_for: str) -> Inboxes:
    """``backend`` as :class:`~notifycore.backends.inboxes.Inboxes`, or :class:`ConfigurationError`."""
    store: Inboxes = require(backend, "inboxes", needed_for)
    return store
