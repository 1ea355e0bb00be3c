"""The embedded default backend: streams and queues in one SQLite file.

A web process, the command line and worker processes on one host share the
file. It runs in WAL mode, so readers never block the writer; every write is
one short ``BEGIN IMMEDIATE`` transaction, and reserving a job is a single
``UPDATE ... RETURNING`` statement, so two workers can never take the same
job. Each thread gets its own connection.

Waking followers: a publish from this process wakes blocked readers at once
through a condition variable; a publish from another process is seen by
polling ``PRAGMA data_version`` (a read of shared memory, not of the file)
every ``poll_interval`` seconds (10 ms by default), and the stream is only
queried again when it changed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from notifycore.backends.base import (
    Backend,
    ConsecutiveIds,
    DeadLetter,
    Job,
    QueuedJob,
    StreamMessage,
    StreamRead,
)
from notifycore.backends.sqlite_inbox import INBOX_SCHEMA, SQLiteInboxes
from notifycore.errors import BackendError, ConfigurationError
from notifycore.event import new_event_id

__all__ = ["DEFAULT_URL", "SQLiteBackend", "path_from_url"]

DEFAULT_URL = "sqlite:///notifycore.db"
_SCHEME = "sqlite://"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nc_stream_meta (
    stream TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL DEFAULT 0,
    trimmed_upto INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS nc_streams (
    stream TEXT NOT NULL,
    id INTEGER NOT NULL,
    published_at REAL NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nc_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload BLOB NOT NULL,
    visible_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    last_error TEXT,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS nc_jobs_queue ON nc_jobs (queue, id);
CREATE TABLE IF NOT EXISTS nc_dead_letters (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS nc_dead_letters_queue ON nc_dead_letters (queue, id);
CREATE TABLE IF NOT EXISTS nc_kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
"""


def path_from_url(url: str | None) -> str:
    """The file path in a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL."""
    url = url or DEFAULT_URL
    if not url.startswith(_SCHEME):
        raise ConfigurationError(
            f"the sqlite backend needs a URL like {DEFAULT_URL!r} (or sqlite:////abs/path.db), "
            f"not {url!r}"
        )
    path = url[len(_SCHEME) :]
    if path.startswith("/"):
        path = path[1:]  # sqlite:///x.db is relative, sqlite:////x.db absolute
    if not path or path == ":memory:" or path.startswith("file::memory:") or "mode=memory" in path:
        raise ConfigurationError(
            f"{url!r} is an in-memory database that other processes cannot see; "
            "use a file (sqlite:///notifycore.db) or BACKEND = 'memory'"
        )
    return path


class SQLiteBackend(SQLiteInboxes, ConsecutiveIds, Backend):
    """Streams and queues in a SQLite file shared by the processes of one host."""

    name = "sqlite"
    id_owner = "sqlite"
    shared = True
    connection_errors = (sqlite3.OperationalError,)
    #: A worker reserves fast jobs up to this many at a time (docs/workers.md, "Batches"):
    #: a reservation here is a local transaction whose fixed cost more jobs share.
    batch_max = 128

    def __init__(
        self,
        url: str | None = None,
        *,
        stream_maxlen: int = 10_000,
        stream_max_age: float = 0.0,
        poll_interval: float = 0.01,
        busy_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            url or DEFAULT_URL, stream_maxlen=stream_maxlen, stream_max_age=stream_max_age
        )
        if sqlite3.sqlite_version_info < (3, 35):
            raise ConfigurationError(
                f"the sqlite backend needs SQLite 3.35 or newer, this Python has {sqlite3.sqlite_version}"
            )
        self.path = path_from_url(self.url)
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"the directory of the SQLite file does not exist: {directory}"
            )
        self.poll_interval = poll_interval
        self.busy_timeout = busy_timeout
        # What sqlite3.connect(timeout=busy_timeout) sets, to restore after _begin_soon.
        self._busy_pragma = f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}"
        self._local = threading.local()
        # Every open connection, by id, with the thread that owns it.
        # (A weak reference: holding the thread would keep its finaliser from ever running.)
        self._connections: dict[int, tuple[sqlite3.Connection, weakref.ref[threading.Thread]]] = {}
        # Re-entrant: a finaliser run by garbage collection inside close() takes it again.
        self._connections_lock = threading.RLock()
        self._cond = threading.Condition()
        self._closed = False
        self._retry_locked(
            lambda: self._db().executescript(_SCHEMA + INBOX_SCHEMA), "create the tables"
        )

    def _retry_locked(self, action: Any, what: str) -> Any:
        """Run ``action``, waiting out a locked file (several processes creating it at once)."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise BackendError(f"cannot {what} in {self.path!r}: {exc}") from exc
                if time.monotonic() > deadline:
                    raise BackendError(f"cannot {what} in {self.path!r}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
            except sqlite3.Error as exc:
                raise BackendError(f"cannot {what} in {self.path!r}: {exc}") from exc

    # -- connections -------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise BackendError("the sqlite backend is closed")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise BackendError(f"cannot open SQLite file {self.path!r}: {exc}") from exc
            # Switching a new file to WAL takes a lock that busy_timeout does not cover.
            self._retry_locked(lambda: db.execute("PRAGMA journal_mode=WAL"), "switch to WAL mode")
            # NORMAL in WAL survives a killed process; only an OS crash can lose the last commits.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            with self._connections_lock:
                self._connections[id(db)] = (db, weakref.ref(threading.current_thread()))
            # Close it when its thread is gone, so short-lived threads do not leak files.
            weakref.finalize(threading.current_thread(), self._forget, db)
        return db

    def _forget(self, db: sqlite3.Connection) -> None:
        with self._connections_lock:
            self._connections.pop(id(db), None)
        with contextlib.suppress(sqlite3.Error):
            db.close()

    def _begin_soon(self, db: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, trying again every 50 µs or so while another connection
        writes (backing off to 2 ms, within ``busy_timeout``).

        SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, many times longer
        than a worker's write transaction (a batch's acks and the next reservation): two
        worker processes would take turns sleeping instead of taking turns at the lock.
        """
        db.execute("PRAGMA busy_timeout = 0")
        began = False
        try:
            delay = 0.00005
            deadline = None
            while True:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    began = True
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.busy_timeout
                    elif now > deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 1.5, 0.002)
        finally:
            try:
                db.execute(self._busy_pragma)
            except BaseException:
                if began:  # no transaction (and no write lock) left open on this connection
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    @contextmanager
    def _write(self, *, soon: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``soon``: wait for another writer in short steps."""
        db = self._db()
        try:
            if soon:
                self._begin_soon(db)
            else:
                db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise BackendError(f"SQLite file {self.path!r} is not writable: {exc}") from exc
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _one(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """One write statement in autocommit mode: atomic on its own, no BEGIN/COMMIT round trips."""
        try:
            # fetchall() runs the statement to its end, which commits it.
            return self._db().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise BackendError(f"SQLite file {self.path!r}: {exc}") from exc

    def close(self) -> None:
        self._closed = True
        current = threading.current_thread()
        with self._connections_lock:
            # Closing a connection another live thread may be using can crash SQLite: those
            # are closed by their thread's finaliser, and refuse new work from now on.
            mine = []
            for key, (db, ref) in self._connections.items():
                owner = ref()
                if owner is None or owner is current or not owner.is_alive():
                    mine.append((key, db))
            for key, _ in mine:
                del self._connections[key]
        for _, db in mine:
            with contextlib.suppress(sqlite3.Error):  # closing is best effort
                db.close()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_for_change(self, version: int, deadline: float) -> int:
        """Sleep until another connection commits (or this process publishes) or the deadline."""
        db = self._db()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return version
            with self._cond:
                notified = self._cond.wait(min(self.poll_interval, remaining))
            current: int = db.execute("PRAGMA data_version").fetchone()[0]
            if notified or current != version:
                return current

    # -- streams -----------------------------------------------------------------------------

    def _append(self, stream: str, items: Iterable[bytes]) -> list[str]:
        now = time.time()
        payloads = list(items)
        for data in payloads:
            if not isinstance(data, bytes):
                raise TypeError(f"stream messages are bytes, not {type(data).__name__}")
        if not payloads:
            return []
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO nc_stream_meta (stream) VALUES (?)", (stream,))
            (last,) = db.execute(
                "UPDATE nc_stream_meta SET last_id = last_id + ? WHERE stream = ? RETURNING last_id",
                (len(payloads), stream),
            ).fetchone()
            first = last - len(payloads) + 1
            db.executemany(
                "INSERT INTO nc_streams (stream, id, published_at, data) VALUES (?, ?, ?, ?)",
                [(stream, first + i, now, data) for i, data in enumerate(payloads)],
            )
            self._trim(db, stream, last, now)
        self._notify()
        return [str(first + i) for i in range(len(payloads))]

    def _trim(self, db: sqlite3.Connection, stream: str, last: int, now: float) -> None:
        cutoff = last - self.stream_maxlen
        if self.stream_max_age > 0:
            row = db.execute(
                "SELECT MAX(id) FROM nc_streams WHERE stream = ? AND published_at < ?",
                (stream, now - self.stream_max_age),
            ).fetchone()
            if row[0] is not None:
                cutoff = max(cutoff, row[0])
        if cutoff <= 0:
            return
        deleted = db.execute(
            "DELETE FROM nc_streams WHERE stream = ? AND id <= ?", (stream, cutoff)
        ).rowcount
        if deleted:
            db.execute(
                "UPDATE nc_stream_meta SET trimmed_upto = MAX(trimmed_upto, ?) WHERE stream = ?",
                (cutoff, stream),
            )

    def _read_now(self, stream: str, after: int, limit: int | None) -> StreamRead:
        db = self._db()
        # One read transaction, so the messages and the meta row agree.
        db.execute("BEGIN")
        try:
            meta = db.execute(
                "SELECT last_id, trimmed_upto FROM nc_stream_meta WHERE stream = ?", (stream,)
            ).fetchone()
            rows = db.execute(
                "SELECT id, data FROM nc_streams WHERE stream = ? AND id > ? ORDER BY id LIMIT ?",
                (stream, after, -1 if limit is None else limit),
            ).fetchall()
        finally:
            db.execute("COMMIT")
        last, trimmed = meta if meta is not None else (0, 0)
        if after > last:
            # An id this stream never gave (a reader from another database, say): start again
            # from the oldest message kept, and say so.
            batch = self._read_now(stream, -1, limit)
            return StreamRead(batch.messages, reset=True)
        reset = after >= 0 and after < trimmed
        return StreamRead([StreamMessage(str(i), bytes(d)) for i, d in rows], reset=reset)

    def read(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        position = self._parse_id(after)
        db = self._db()
        version: int = db.execute("PRAGMA data_version").fetchone()[0]
        batch = self._read_now(stream, position, limit)
        if batch.messages or batch.reset or not block:
            return batch
        deadline = time.monotonic() + block
        while time.monotonic() < deadline:
            version = self._wait_for_change(version, deadline)
            batch = self._read_now(stream, position, limit)
            if batch.messages or batch.reset:
                return batch
        return batch

    def last_id(self, stream: str) -> str | None:
        row = (
            self._db()
            .execute("SELECT last_id FROM nc_stream_meta WHERE stream = ?", (stream,))
            .fetchone()
        )
        return str(row[0]) if row is not None and row[0] else None

    # -- queues ------------------------------------------------------------------------------

    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        if not isinstance(payload, bytes):
            raise TypeError(f"job payloads are bytes, not {type(payload).__name__}")
        now = time.time()
        ((job_id,),) = self._one(
            "INSERT INTO nc_jobs (queue, payload, visible_at, enqueued_at) VALUES (?, ?, ?, ?) RETURNING id",
            (queue, payload, now + max(delay, 0.0), now),
        )
        self._notify()
        return str(job_id)

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        return self._enqueue(queue, list(payloads), 0.0)

    def _enqueue(self, queue: str, payloads: list[bytes], delay: float) -> list[str]:
        for payload in payloads:
            if not isinstance(payload, bytes):
                raise TypeError(f"job payloads are bytes, not {type(payload).__name__}")
        now = time.time()
        ids = []
        with self._write() as db:
            for payload in payloads:
                cursor = db.execute(
                    "INSERT INTO nc_jobs (queue, payload, visible_at, enqueued_at) VALUES (?, ?, ?, ?)",
                    (queue, payload, now + max(delay, 0.0), now),
                )
                ids.append(str(cursor.lastrowid))
        self._notify()
        return ids

    # One statement picks and hides the oldest visible jobs: nobody else can take them.
    _TAKE = (
        "UPDATE nc_jobs SET visible_at = ?, attempts = attempts + 1, receipt = ? "
        "WHERE id IN (SELECT id FROM nc_jobs WHERE queue = ? AND visible_at <= ? "
        "ORDER BY id LIMIT ?) RETURNING id, payload, attempts, last_error"
    )
    _ACK = "DELETE FROM nc_jobs WHERE id = ? AND receipt = ? RETURNING id"

    def _taken(self, db: sqlite3.Connection, queue: str, count: int, hold: float) -> list[Job]:
        """Reserve up to ``count`` jobs with one statement (in autocommit mode, or within the
        caller's transaction); oldest first."""
        now = time.time()
        receipt = new_event_id()  # unique and unguessable, like a uuid4, for a quarter of it
        rows = db.execute(self._TAKE, (now + hold, receipt, queue, now, count)).fetchall()
        if len(rows) > 1:
            rows.sort()
        return [
            Job(str(job_id), queue, bytes(payload), attempts, receipt, last_error)
            for job_id, payload, attempts, last_error in rows
        ]

    def _take(self, queue: str, visibility_timeout: float) -> Job | None:
        try:
            jobs = self._taken(self._db(), queue, 1, visibility_timeout)
        except sqlite3.OperationalError as exc:
            raise BackendError(f"SQLite file {self.path!r}: {exc}") from exc
        return jobs[0] if jobs else None

    def reserve_many(self, queue: str, count: int, *, visibility_timeout: float) -> list[Job]:
        if count <= 0:
            return []
        try:
            return self._taken(self._db(), queue, count, visibility_timeout)
        except sqlite3.OperationalError as exc:
            raise BackendError(f"SQLite file {self.path!r}: {exc}") from exc

    @staticmethod
    def _delete_held(db: sqlite3.Connection, jobs: Sequence[Job]) -> list[bool]:
        """Delete the ``jobs`` still held by their reservation: one statement per receipt (a
        batch reserved together shares one); each job's answer, in order."""
        by_receipt: dict[str | None, list[int]] = {}
        for job in jobs:
            by_receipt.setdefault(job.receipt, []).append(int(job.id))
        gone: set[tuple[str | None, int]] = set()
        for receipt, ids in by_receipt.items():
            for start in range(0, len(ids), 500):  # within SQLite's limit of variables
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"DELETE FROM nc_jobs WHERE receipt = ? AND id IN ({marks}) RETURNING id",
                    (receipt, *chunk),
                ).fetchall()
                gone.update((receipt, row[0]) for row in rows)
        return [(job.receipt, int(job.id)) in gone for job in jobs]

    def ack_many(self, jobs: Iterable[Job]) -> int:
        held = list(jobs)
        if not held:
            return 0
        with self._write() as db:
            return sum(self._delete_held(db, held))

    def ack_and_reserve(
        self, done: Sequence[Job], queue: str, *, count: int = 1, visibility_timeout: float
    ) -> tuple[list[bool], list[Job]]:
        if not done and count <= 0:
            return [], []
        # One write transaction instead of one per ack and one for the reservation; the
        # worker loops of other processes want the lock as often: take it as soon as it is free.
        with self._write(soon=True) as db:
            acked = self._delete_held(db, done) if done else []
            jobs = self._taken(db, queue, count, visibility_timeout) if count > 0 else []
        return acked, jobs

    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        job = self._take(queue, visibility_timeout)
        if job is not None or not block:
            return job
        db = self._db()
        version: int = db.execute("PRAGMA data_version").fetchone()[0]
        deadline = time.monotonic() + block
        while time.monotonic() < deadline:
            # Delayed and lapsed jobs become visible without any commit: wake at least by then.
            row = db.execute(
                "SELECT MIN(visible_at) FROM nc_jobs WHERE queue = ?", (queue,)
            ).fetchone()
            wait_until = deadline
            if row[0] is not None:
                wait_until = min(deadline, time.monotonic() + max(row[0] - time.time(), 0.0))
            version = self._wait_for_change(version, max(wait_until, time.monotonic() + 0.001))
            job = self._take(queue, visibility_timeout)
            if job is not None:
                return job
        return None

    # ack and retry act only while the job still holds this reservation (its receipt).

    def ack(self, job: Job) -> bool:
        return bool(self._one(self._ACK, (int(job.id), job.receipt)))

    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        done = self._one(
            "UPDATE nc_jobs SET visible_at = ?, receipt = NULL, last_error = ? "
            "WHERE id = ? AND receipt = ? RETURNING id",
            (time.time() + max(delay, 0.0), error, int(job.id), job.receipt),
        )
        if done:
            self._notify()
        return bool(done)

    def release(self, job: Job) -> bool:
        done = self._one(
            "UPDATE nc_jobs SET visible_at = ?, receipt = NULL, attempts = MAX(attempts - 1, 0) "
            "WHERE id = ? AND receipt = ? RETURNING id",
            (time.time(), int(job.id), job.receipt),
        )
        if done:
            self._notify()
        return bool(done)

    def dead_letter(self, job: Job, *, error: str) -> bool:
        with self._write() as db:
            moved = db.execute(
                "DELETE FROM nc_jobs WHERE id = ? AND receipt = ? RETURNING queue, payload",
                (int(job.id), job.receipt),
            ).fetchone()
            if moved is None:
                return False
            db.execute(
                "INSERT INTO nc_dead_letters (id, queue, payload, attempts, error, failed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (int(job.id), *moved, job.attempts, error, time.time()),
            )
        return True

    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        rows = (
            self._db()
            .execute(
                "SELECT id, queue, payload, attempts, error, failed_at FROM nc_dead_letters "
                "WHERE queue = ? ORDER BY id LIMIT ?",
                (queue, -1 if limit is None else limit),
            )
            .fetchall()
        )
        return [DeadLetter(str(i), q, bytes(p), a, e, f) for i, q, p, a, e, f in rows]

    def _dead_ids(self, db: sqlite3.Connection, queue: str, ids: Iterable[str] | None) -> list[int]:
        rows = db.execute("SELECT id FROM nc_dead_letters WHERE queue = ? ORDER BY id", (queue,))
        existing = [row[0] for row in rows]
        if ids is None:
            return existing
        wanted = {int(i) for i in ids if str(i).isdigit()}
        return [i for i in existing if i in wanted]

    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        now = time.time()
        with self._write() as db:
            chosen = self._dead_ids(db, queue, ids)
            for dead_id in chosen:
                db.execute(
                    "INSERT INTO nc_jobs (queue, payload, visible_at, enqueued_at) "
                    "SELECT queue, payload, ?, ? FROM nc_dead_letters WHERE id = ?",
                    (now, now, dead_id),
                )
                db.execute("DELETE FROM nc_dead_letters WHERE id = ?", (dead_id,))
        self._notify()
        return len(chosen)

    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        with self._write() as db:
            chosen = self._dead_ids(db, queue, ids)
            db.executemany("DELETE FROM nc_dead_letters WHERE id = ?", [(i,) for i in chosen])
        return len(chosen)

    def queue_length(self, queue: str) -> int:
        row = (
            self._db().execute("SELECT COUNT(*) FROM nc_jobs WHERE queue = ?", (queue,)).fetchone()
        )
        return int(row[0])

    def browse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        rows = (
            self._db()
            .execute(
                "SELECT id, payload, attempts, last_error FROM nc_jobs WHERE queue = ? "
                "ORDER BY id LIMIT ?",
                (queue, -1 if limit is None else limit),
            )
            .fetchall()
        )
        return [QueuedJob(str(i), bytes(p), a, e) for i, p, a, e in rows]

    # -- optional capabilities: claims, a key-value store, counters ------------------------------
    # A key whose expires_at has passed is absent: every statement below treats it so.

    def kv_get(self, key: str) -> bytes | None:
        row = (
            self._db()
            .execute(
                "SELECT value FROM nc_kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, time.time()),
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def kv_exists(self, key: str) -> bool:
        return self.kv_get(key) is not None

    @staticmethod
    def _expires(ttl: float | None) -> float | None:
        return None if ttl is None else time.time() + ttl

    def kv_set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"values are bytes, not {type(value).__name__}")
        self._one(
            "INSERT INTO nc_kv (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "expires_at = excluded.expires_at",
            (key, value, self._expires(ttl)),
        )

    def kv_set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        if not isinstance(value, bytes):
            raise TypeError(f"values are bytes, not {type(value).__name__}")
        now = time.time()
        # Insert, or take over a key whose ttl ran out; nothing when a live one is there.
        inserted = self._one(
            "INSERT INTO nc_kv (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "expires_at = excluded.expires_at "
            "WHERE nc_kv.expires_at IS NOT NULL AND nc_kv.expires_at <= ? RETURNING key",
            (key, value, self._expires(ttl), now),
        )
        if inserted and os.urandom(1) == b"\x00":  # about one call in 256 sweeps expired keys
            self._one("DELETE FROM nc_kv WHERE expires_at <= ?", (now,))
        return bool(inserted)

    def kv_delete(self, key: str) -> bool:
        now = time.time()
        deleted = self._one("DELETE FROM nc_kv WHERE key = ? RETURNING expires_at", (key,))
        return bool(deleted) and (deleted[0][0] is None or deleted[0][0] > now)

    def kv_incr(self, key: str, amount: int = 1) -> int:
        now = time.time()
        # One statement: an expired count starts again from zero; a count keeps no ttl.
        ((count,),) = self._one(
            "INSERT INTO nc_kv (key, value, expires_at) "
            "VALUES (?, CAST(CAST(? AS TEXT) AS BLOB), NULL) "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(CAST(CASE "
            "WHEN nc_kv.expires_at IS NOT NULL AND nc_kv.expires_at <= ? THEN 0 "
            "ELSE CAST(nc_kv.value AS TEXT) END AS INTEGER) + ? AS TEXT) AS BLOB), "
            "expires_at = NULL RETURNING CAST(CAST(value AS TEXT) AS INTEGER)",
            (key, amount, now, amount),
        )
        return int(count)
