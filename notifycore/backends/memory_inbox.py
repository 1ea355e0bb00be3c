"""Inboxes in this process's memory (:class:`~notifycore.backends.inboxes.Inboxes`).

Mixed into :class:`~notifycore.backends.memory.MemoryBackend`. Each user's
items sit in a dictionary by id, with two sorted lists of ``seq`` (the
archived ones and the others) for listing newest first, and an unread
count kept with every change; one lock makes every change atomic.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, insort
from collections.abc import Iterable

from notifycore.backends import inboxes
from notifycore.backends.inboxes import ARCHIVED, READ, UNREAD, InboxChange, InboxRecord

__all__ = ["MemoryInboxes"]

_create_lock = threading.Lock()


class _Inbox:
    __slots__ = ("active", "archived", "by_id", "by_seq", "next_seq", "unread")

    def __init__(self) -> None:
        self.by_id: dict[str, InboxRecord] = {}
        self.by_seq: dict[int, str] = {}
        self.active: list[int] = []  # seqs of unread and read items, ascending
        self.archived: list[int] = []  # seqs of archived items, ascending
        self.next_seq = 1
        self.unread = 0

    def remove(self, record: InboxRecord) -> None:
        del self.by_id[record.item_id]
        del self.by_seq[record.seq]
        seqs = self.archived if record.state == ARCHIVED else self.active
        del seqs[bisect_left(seqs, record.seq)]
        if record.state == UNREAD:
            self.unread -= 1

    def oldest(self) -> InboxRecord:
        first = min(
            self.active[0] if self.active else 1 << 62,
            self.archived[0] if self.archived else 1 << 62,
        )
        return self.by_id[self.by_seq[first]]


class MemoryInboxes:
    """The ``inbox_*`` methods, over dictionaries guarded by one lock."""

    _inbox_lock: threading.Lock
    _inbox_users: dict[str, _Inbox]

    def _inboxes(self) -> tuple[threading.Lock, dict[str, _Inbox]]:
        try:
            return self._inbox_lock, self._inbox_users
        except AttributeError:
            with _create_lock:
                if not hasattr(self, "_inbox_users"):
                    self._inbox_lock = threading.Lock()
                    self._inbox_users = {}
            return self._inbox_lock, self._inbox_users

    def inbox_add(
        self,
        user: str,
        item_id: str,
        data: bytes,
        *,
        max_items: int,
        max_age: float | None = None,
    ) -> InboxChange:
        keep, max_age = inboxes.add_retention(data, max_items, max_age)
        lock, users = self._inboxes()
        now = time.time()
        with lock:
            inbox = users.get(user)
            if inbox is None:
                inbox = users[user] = _Inbox()
            if item_id in inbox.by_id:
                return InboxChange((), inbox.unread)
            seq = inbox.next_seq
            inbox.next_seq += 1
            inbox.by_id[item_id] = InboxRecord(item_id, seq, UNREAD, now, data)
            inbox.by_seq[seq] = item_id
            inbox.active.append(seq)
            inbox.unread += 1
            while len(inbox.by_id) > keep:
                inbox.remove(inbox.oldest())
            if max_age is not None:
                while inbox.by_id and (oldest := inbox.oldest()).added < now - max_age:
                    inbox.remove(oldest)
            return InboxChange((item_id,), inbox.unread, 1, seq)

    def inbox_list(
        self, user: str, *, before: int | None = None, limit: int = 50, archived: bool = False
    ) -> list[InboxRecord]:
        lock, users = self._inboxes()
        with lock:
            inbox = users.get(user)
            if inbox is None or limit <= 0:
                return []
            seqs = inbox.archived if archived else inbox.active
            end = len(seqs) if before is None else bisect_left(seqs, before)
            chosen = seqs[max(0, end - limit) : end]
            return [inbox.by_id[inbox.by_seq[seq]] for seq in reversed(chosen)]

    def inbox_get(self, user: str, item_ids: Iterable[str]) -> list[InboxRecord]:
        lock, users = self._inboxes()
        with lock:
            inbox = users.get(user)
            if inbox is None:
                return []
            return [inbox.by_id[i] for i in inboxes.unique_ids(item_ids) if i in inbox.by_id]

    def inbox_unread(self, user: str) -> int:
        lock, users = self._inboxes()
        with lock:
            inbox = users.get(user)
            return 0 if inbox is None else inbox.unread

    def _set_state(self, inbox: _Inbox, record: InboxRecord, state: str) -> None:
        if record.state == UNREAD:
            inbox.unread -= 1
        if state == ARCHIVED:
            del inbox.active[bisect_left(inbox.active, record.seq)]
            insort(inbox.archived, record.seq)
        inbox.by_id[record.item_id] = InboxRecord(
            record.item_id, record.seq, state, record.added, record.data
        )

    def _change(
        self, user: str, item_ids: Iterable[str], states: tuple[str, ...], state: str
    ) -> InboxChange:
        """Move the items among ``item_ids`` that are in one of ``states`` to ``state``."""
        ids = inboxes.unique_ids(item_ids)
        lock, users = self._inboxes()
        with lock:
            inbox = users.get(user)
            if inbox is None:
                return InboxChange((), 0)
            changed = []
            for item_id in ids:
                record = inbox.by_id.get(item_id)
                if record is not None and record.state in states:
                    self._set_state(inbox, record, state)
                    changed.append(item_id)
            return InboxChange(tuple(changed), inbox.unread, len(changed))

    def inbox_mark_read(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        return self._change(user, item_ids, (UNREAD,), READ)

    def inbox_mark_all_read(self, user: str, *, up_to: int | None = None) -> InboxChange:
        lock, users = self._inboxes()
        with lock:
            inbox = users.get(user)
            if inbox is None:
                return InboxChange((), 0)
            count = 0
            for record in list(inbox.by_id.values()):
                if record.state == UNREAD and (up_to is None or record.seq <= up_to):
                    self._set_state(inbox, record, READ)
                    count += 1
            return InboxChange((), inbox.unread, count)

    def inbox_archive(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        return self._change(user, item_ids, (UNREAD, READ), ARCHIVED)
