from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifycore import BackendError, ConfigurationError, InvalidStreamId, Notifications
from notifycore.backends.sqlite import SQLiteBackend, path_from_url
from notifycore.testing import wait_for
from notifycore.testing.contract import BackendContract


class TestSQLiteBackendContract(BackendContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path

    def make_backend(self, **options: Any) -> SQLiteBackend:
        return SQLiteBackend(f"sqlite:///{self.directory / 'contract.db'}", **options)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SQLiteBackend]:
    made = SQLiteBackend(f"sqlite:///{tmp_path / 'b.db'}")
    yield made
    made.close()


def test_urls() -> None:
    assert path_from_url(None) == "notifycore.db"
    assert path_from_url("sqlite:///data/n.db") == "data/n.db"
    assert path_from_url("sqlite:////var/lib/n.db") == "/var/lib/n.db"
    for memory in ("sqlite:///:memory:", "sqlite://", "sqlite:///file::memory:?cache=shared"):
        with pytest.raises(ConfigurationError, match="other processes cannot see"):
            path_from_url(memory)
    with pytest.raises(ConfigurationError, match="needs a URL like"):
        path_from_url("redis://127.0.0.1:6379/0")


def test_sqlite_is_the_default_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    n = Notifications(environ={})
    try:
        assert isinstance(n.backend, SQLiteBackend)
        n.backend.publish("s", b"x")
        assert (tmp_path / "notifycore.db").exists()
    finally:
        n.close()


def test_memory_url_is_refused_through_settings() -> None:
    with pytest.raises(ConfigurationError, match="in-memory database"):
        Notifications(config={"BACKEND_URL": "sqlite:///:memory:"}, environ={})


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SQLiteBackend(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")


def test_wal_mode_and_tables(backend: SQLiteBackend) -> None:
    db = sqlite3.connect(backend.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"nc_streams", "nc_stream_meta", "nc_jobs", "nc_dead_letters", "nc_kv"} <= tables
    finally:
        db.close()


def test_malformed_ids_are_refused(backend: SQLiteBackend) -> None:
    with pytest.raises(InvalidStreamId):
        backend.read("s", "1-0")


def test_retention_by_age(tmp_path: Path) -> None:
    import time

    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'age.db'}", stream_max_age=0.05)
    try:
        first = backend.publish("s", b"old")
        time.sleep(0.1)
        backend.publish("s", b"new")
        assert [m.data for m in backend.read("s").messages] == [b"new"]
        assert backend.read("s", first).reset is False
        assert backend.read("s", "0").reset is True
    finally:
        backend.close()


def test_two_backends_on_one_file_share_streams_and_queues(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = SQLiteBackend(url), SQLiteBackend(url)
    try:
        a.publish("s", b"from a")
        assert [m.data for m in b.read("s").messages] == [b"from a"]
        b.enqueue("q", b"job")
        job = a.reserve("q", visibility_timeout=30)
        assert job is not None and job.payload == b"job"
    finally:
        a.close()
        b.close()


def test_follow_wakes_on_a_publish_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "xproc.db"
    backend = SQLiteBackend(f"sqlite:///{path}")
    try:
        first = backend.publish("s", b"before")
        script = textwrap.dedent(
            f"""
            import time
            from notifycore.backends.sqlite import SQLiteBackend
            b = SQLiteBackend("sqlite:///{path}")
            time.sleep(0.2)
            b.publish("s", b"from the other process")
            """
        )
        child = subprocess.Popen([sys.executable, "-c", script])
        try:
            batch = backend.read("s", first, block=30)
        finally:
            child.wait(30)
        assert child.returncode == 0
        assert [m.data for m in batch.messages] == [b"from the other process"]
    finally:
        backend.close()


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_worker_reservation_tries_again_while_another_process_writes(tmp_path: Path) -> None:
    # A worker's ack + reservation does not sleep in SQLite's busy handler (1, 2, 5 ms...):
    # it tries BEGIN IMMEDIATE again itself, takes the lock once it is free, and leaves the
    # connection's busy timeout as it found it.
    path = tmp_path / "busy.db"
    backend = SQLiteBackend(f"sqlite:///{path}")
    try:
        backend.enqueue("q", b"job")
        other = _hold_write_lock(path)
        tries: list[str] = []
        results: list[Any] = []

        def take() -> None:
            db = backend._db()
            db.set_trace_callback(lambda sql: tries.append(sql) if "BEGIN" in sql else None)
            try:
                results.append(backend.ack_and_reserve([], "q", visibility_timeout=30))
            except Exception as exc:
                results.append(exc)
            db.set_trace_callback(None)
            results.append(db.execute("PRAGMA busy_timeout").fetchone()[0])

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        try:
            wait_for(lambda: len(tries) >= 2 or bool(results), 30, "a second try at the lock")
        finally:
            other.execute("COMMIT")
            other.close()
        thread.join(30)
        assert len(tries) >= 2, results
        (acked, jobs), timeout = results
        assert acked == [] and [job.payload for job in jobs] == [b"job"]
        assert timeout == 30_000
    finally:
        backend.close()


def test_a_worker_reservation_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "stuck.db"
    backend = SQLiteBackend(f"sqlite:///{path}", busy_timeout=0.2)
    try:
        backend.enqueue("q", b"job")
        other = _hold_write_lock(path)
        try:
            with pytest.raises(BackendError, match="locked"):
                backend.ack_and_reserve([], "q", visibility_timeout=30)
        finally:
            other.execute("ROLLBACK")
            other.close()
        # The connection waits for other writers as before, and the job is still there.
        assert backend._db().execute("PRAGMA busy_timeout").fetchone()[0] == 200
        (_, jobs) = backend.ack_and_reserve([], "q", visibility_timeout=30)
        assert [job.payload for job in jobs] == [b"job"]
    finally:
        backend.close()


def test_a_failure_after_the_write_lock_is_taken_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    # Setting the busy timeout back can fail after BEGIN IMMEDIATE succeeded (here: a
    # broken statement; in life, an interrupt): the lock must not stay with this connection.
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'held.db'}", busy_timeout=0.2)
    try:
        backend.enqueue("q", b"job")
        restore = backend._busy_pragma
        backend._busy_pragma = "PRAGMA busy_timeout = nonsense("
        with pytest.raises(BackendError):
            backend.ack_and_reserve([], "q", visibility_timeout=30)
        backend._busy_pragma = restore
        db = backend._db()
        assert not db.in_transaction
        db.execute(restore)
        (_, jobs) = backend.ack_and_reserve([], "q", visibility_timeout=30)
        assert [job.payload for job in jobs] == [b"job"]
    finally:
        backend.close()
