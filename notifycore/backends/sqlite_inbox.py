"""Inboxes in the SQLite file (:class:`~notifycore.backends.inboxes.Inboxes`).

Mixed into :class:`~notifycore.backends.sqlite.SQLiteBackend`. Items live in
``nc_inbox`` (one row per item, keyed by user and ``seq``); ``nc_inbox_meta``
holds each user's next ``seq``, item count and unread count. Every change is
one ``BEGIN IMMEDIATE`` transaction that updates the items and the counts
together, so the unread count read back is exact across the processes that
share the file, and reading it is one primary-key lookup.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from notifycore.backends import inboxes
from notifycore.backends.inboxes import ARCHIVED, READ, UNREAD, InboxChange, InboxRecord
from notifycore.errors import BackendError

__all__ = ["INBOX_SCHEMA", "SQLiteInboxes"]

#: Created with the backend's own tables. ``unread`` and ``archived`` are 0 or 1.
INBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS nc_inbox (
    user TEXT NOT NULL,
    seq INTEGER NOT NULL,
    item_id TEXT NOT NULL,
    unread INTEGER NOT NULL,
    archived INTEGER NOT NULL,
    added REAL NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (user, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS nc_inbox_item ON nc_inbox (user, item_id);
CREATE INDEX IF NOT EXISTS nc_inbox_listed ON nc_inbox (user, archived, seq);
CREATE INDEX IF NOT EXISTS nc_inbox_unread ON nc_inbox (user, seq) WHERE unread = 1;
CREATE TABLE IF NOT EXISTS nc_inbox_meta (
    user TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    total INTEGER NOT NULL,
    unread INTEGER NOT NULL
) WITHOUT ROWID;
"""

_COLUMNS = "item_id, seq, unread, archived, added, data"
_CHUNK = 500  # ids per statement, well under SQLite's limit on parameters


def _record(row: tuple[Any, ...]) -> InboxRecord:
    item_id, seq, unread, archived, added, data = row
    state = ARCHIVED if archived else UNREAD if unread else READ
    return InboxRecord(item_id, seq, state, added, bytes(data))


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class SQLiteInboxes:
    """The ``inbox_*`` methods over the backend's connection and write transactions."""

    path: str
    _db: Callable[[], sqlite3.Connection]
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    @staticmethod
    def _unread_of(db: sqlite3.Connection, user: str) -> int:
        row = db.execute("SELECT unread FROM nc_inbox_meta WHERE user = ?", (user,)).fetchone()
        return 0 if row is None else int(row[0])

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
        now = time.time()
        with self._write() as db:
            meta = db.execute(
                "INSERT INTO nc_inbox_meta (user, next_seq, total, unread) VALUES (?, 1, 0, 0) "
                "ON CONFLICT (user) DO UPDATE SET next_seq = next_seq RETURNING next_seq, total",
                (user,),
            ).fetchone()
            seq, total = int(meta[0]), int(meta[1])
            added = db.execute(
                "INSERT INTO nc_inbox (user, seq, item_id, unread, archived, added, data) "
                "VALUES (?, ?, ?, 1, 0, ?, ?) ON CONFLICT (user, item_id) DO NOTHING "
                "RETURNING seq",
                (user, seq, item_id, now, data),
            ).fetchall()
            if not added:
                return InboxChange((), self._unread_of(db, user))
            total += 1
            rows = []  # the unread flags of the items the retention removes
            if total > keep:
                rows += db.execute(
                    "DELETE FROM nc_inbox WHERE user = ? AND seq IN "
                    "(SELECT seq FROM nc_inbox WHERE user = ? ORDER BY seq LIMIT ?) RETURNING unread",
                    (user, user, total - keep),
                ).fetchall()
            if max_age is not None:
                rows += db.execute(
                    "DELETE FROM nc_inbox WHERE user = ? AND seq IN (SELECT seq FROM nc_inbox "
                    "WHERE user = ? AND added < ? ORDER BY seq) RETURNING unread",
                    (user, user, now - max_age),
                ).fetchall()
            removed, unread_removed = len(rows), sum(r[0] for r in rows)
            (unread,) = db.execute(
                "UPDATE nc_inbox_meta SET next_seq = next_seq + 1, total = total + 1 - ?, "
                "unread = unread + 1 - ? WHERE user = ? RETURNING unread",
                (removed, unread_removed, user),
            ).fetchone()
        return InboxChange((item_id,), int(unread), 1, seq)

    def inbox_list(
        self, user: str, *, before: int | None = None, limit: int = 50, archived: bool = False
    ) -> list[InboxRecord]:
        if limit <= 0:
            return []
        rows = self._read(
            f"SELECT {_COLUMNS} FROM nc_inbox WHERE user = ? AND archived = ? AND seq < ? "
            "ORDER BY seq DESC LIMIT ?",
            (user, int(archived), (1 << 62) if before is None else before, limit),
        )
        return [_record(row) for row in rows]

    def inbox_get(self, user: str, item_ids: Iterable[str]) -> list[InboxRecord]:
        ids = inboxes.unique_ids(item_ids)
        found: dict[str, InboxRecord] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            for row in self._read(
                f"SELECT {_COLUMNS} FROM nc_inbox WHERE user = ? AND item_id IN ({marks})",
                (user, *chunk),
            ):
                found[row[0]] = _record(row)
        return [found[i] for i in ids if i in found]

    def inbox_unread(self, user: str) -> int:
        rows = self._read("SELECT unread FROM nc_inbox_meta WHERE user = ?", (user,))
        return int(rows[0][0]) if rows else 0

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise BackendError(f"SQLite file {self.path!r}: {exc}") from exc

    def _change(self, user: str, item_ids: Iterable[str], where: str, change: str) -> InboxChange:
        """Set ``change`` on the items among ``item_ids`` that match ``where``, in one
        transaction with the unread count."""
        ids = inboxes.unique_ids(item_ids)
        changed: list[str] = []
        unread_gone = 0
        with self._write() as db:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                selected = f"user = ? AND item_id IN ({marks}) AND {where}"
                rows = db.execute(
                    f"SELECT item_id, unread FROM nc_inbox WHERE {selected}", (user, *chunk)
                ).fetchall()
                if rows:
                    db.execute(f"UPDATE nc_inbox SET {change} WHERE {selected}", (user, *chunk))
                changed.extend(r[0] for r in rows)
                unread_gone += sum(r[1] for r in rows)
            if unread_gone:
                db.execute(
                    "UPDATE nc_inbox_meta SET unread = unread - ? WHERE user = ?",
                    (unread_gone, user),
                )
            unread = self._unread_of(db, user)
        order = {item_id: n for n, item_id in enumerate(ids)}
        changed.sort(key=order.__getitem__)
        return InboxChange(tuple(changed), unread, len(changed))

    def inbox_mark_read(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        return self._change(user, item_ids, "unread = 1 AND archived = 0", "unread = 0")

    def inbox_archive(self, user: str, item_ids: Iterable[str]) -> InboxChange:
        return self._change(user, item_ids, "archived = 0", "archived = 1, unread = 0")

    def inbox_mark_all_read(self, user: str, *, up_to: int | None = None) -> InboxChange:
        with self._write() as db:
            count = db.execute(
                "UPDATE nc_inbox SET unread = 0 WHERE user = ? AND unread = 1 AND seq <= ?",
                (user, (1 << 62) if up_to is None else up_to),
            ).rowcount
            if count:
                db.execute(
                    "UPDATE nc_inbox_meta SET unread = unread - ? WHERE user = ?", (count, user)
                )
            unread = self._unread_of(db, user)
        return InboxChange((), unread, count)
