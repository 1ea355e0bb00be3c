"""The inboxes capability: per-user lists of items with read state and an exact unread count.

A backend that offers :class:`Inboxes` keeps, for each user, the items the
notification centre (:mod:`notifycore.inbox`) adds — an event's JSON under
its ``event_id`` — newest first, each ``unread``, ``read`` or ``archived``.
Every change is one atomic step on the backend (one transaction, one Lua
script), and each keeps the user's unread count with it, so
:meth:`Inboxes.inbox_unread` is one read, never a scan, and stays exact
under concurrent senders and readers in several processes.

Items get a per-user sequence number (``seq``) when they are added: larger is
newer, and it is the cursor of :meth:`Inboxes.inbox_list` (``before``) and of
:meth:`Inboxes.inbox_mark_all_read` (``up_to``). Adding an ``item_id`` the
inbox already holds changes nothing (a retried send, a second hub). Retention
is applied when an item is added: at most ``max_items`` per user (the oldest
go first, whatever their state) and none older than ``max_age`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "ARCHIVED",
    "READ",
    "STATES",
    "UNREAD",
    "InboxChange",
    "InboxRecord",
    "Inboxes",
    "add_retention",
    "unique_ids",
]

UNREAD = "unread"
READ = "read"
ARCHIVED = "archived"
#: Every state an item can be in.
STATES = (UNREAD, READ, ARCHIVED)


def add_retention(data: object, max_items: int, max_age: float | None) -> tuple[int, float | None]:
    """Check the item of an :meth:`Inboxes.inbox_add` and return its retention as every
    store applies it: how many items are kept (at least one), and the age limit in
    seconds (None: none, also for ``max_age`` 0 or below).

    Raises TypeError when ``data`` is not bytes."""
    if not isinstance(data, bytes):
        raise TypeError(f"an inbox item is bytes, not {type(data).__name__}")
    return max(max_items, 1), (max_age if max_age is not None and max_age > 0 else None)


def unique_ids(item_ids: Iterable[str]) -> list[str]:
    """``item_ids`` once each, in the order first given: what a store reads or changes."""
    return list(dict.fromkeys(item_ids))


@dataclass(frozen=True, slots=True)
class InboxRecord:
    """One item of a user's inbox, as a backend keeps it."""

    #: The id it was added under (the event's ``event_id``).
    item_id: str
    #: Its position in the user's inbox: larger is newer; the cursor of listing.
    seq: int
    #: ``unread``, ``read`` or ``archived``.
    state: str
    #: When it was added (seconds since the epoch).
    added: float
    #: What was added (the event's JSON), byte for byte.
    data: bytes


@dataclass(frozen=True, slots=True)
class InboxChange:
    """What one change did: the ids whose state it changed, and the unread count after it."""

    #: The ids it changed (for an add: the new item's; empty when it was there already). A
    #: change of many items at once (:meth:`Inboxes.inbox_mark_all_read`) lists none: see count.
    changed: tuple[str, ...]
    #: The user's unread count right after the change.
    unread: int
    #: How many items it changed.
    count: int = 0
    #: For an add: the new item's ``seq`` (0 when nothing was added).
    seq: int = 0


@runtime_checkable
class Inboxes(Protocol):
    """Per-user inboxes (see the module); ``user`` and ``item_id`` are non-empty strings."""

    def inbox_add(
        self,
        user: str,
        item_id: str,
        data: bytes,
        *,
        max_items: int,
        max_age: float | None = None,
    ) -> InboxChange:
        """Add an unread item, newest of all, then apply the retention; an ``item_id`` already
        there changes nothing (``changed`` is empty)."""
        ...

    def inbox_list(
        self, user: str, *, before: int | None = None, limit: int = 50, archived: bool = False
    ) -> list[InboxRecord]:
        """At most ``limit`` items with a ``seq`` below ``before`` (None: from the newest),
        newest first: the unread and read ones, or with ``archived`` the archived ones."""
        ...

    def inbox_get(self, user: str, item_ids: Iterable[str]) -> list[InboxRecord]:
        """The items with these ids that the inbox holds, in any state (in the order asked)."""
        ...

    def inbox_unread(self, user: str) -> int:
        """The number of unread items: one read of a count kept with every change."""
        ...

    def inbox_mark_read(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        """Mark these unread items read (read, archived or unknown ones are left as they are)."""
        ...

    def inbox_mark_all_read(self, user: str, *, up_to: int | None = None) -> InboxChange:
        """Mark every unread item read, or only those with a ``seq`` up to ``up_to``."""
        ...

    def inbox_archive(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        """Archive these items (unread or read; an unread one no longer counts)."""
        ...
