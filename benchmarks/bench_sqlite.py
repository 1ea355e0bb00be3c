"""The SQLite backend: enqueue, drain (one and two worker processes) and cross-process follow latency.

Baselines use the standard library's sqlite3 directly on a file with the same
settings (WAL, synchronous=NORMAL): one INSERT per job in its own transaction
(or one executemany per batch of 100) for enqueueing; UPDATE ... RETURNING then
DELETE per job for draining; a follower that polls with SELECT every 10 ms for
latency. Worker processes run ``notifycore worker --burst`` on a no-op consumer,
timed from their start (imports included) to their exit. Before the process
rows, notifycore's modules are compiled to bytecode, as installing a wheel
does: a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (as this machine sets)
would otherwise compile every module again in every worker process.

Workers reserve fast jobs up to 128 at a time on SQLite and ack them with the next
reservation, in one write transaction (docs/workers.md, "Batches"), where the
baseline takes two per job; what is left is Python's work per job and, for
the process rows, each process's start-up. The
follow latency is bounded by the 10 ms ``PRAGMA data_version`` poll, the same
interval as the raw polling baseline.
"""

from __future__ import annotations

import compileall
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import notifycore
from benchmarks.common import Measurement, alternate, percentile_ms, rate_of
from notifycore import Notifications
from notifycore.backends.sqlite import SQLiteBackend

NAME = "SQLite backend: enqueue, drain, follow latency"
PAYLOAD = json.dumps(
    {"v": 1, "hub": "Bench", "consumer": "noop", "event": {"title": "x" * 200}}
).encode()
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))
WRITE_LIMIT = (
    "the disk's fsync of the WAL at each commit (synchronous=NORMAL syncs at checkpoints) "
    "and SQLite's single writer; one core"
)
DRAIN_LIMIT = (
    "Python's work per job (decode the job, build its Event, run the consumer and its "
    "hooks) on one core; a batch of up to 128 jobs takes one write transaction, the "
    "baseline two per job"
)
PROCESS_LIMIT = (
    "; each process starts Python and imports notifycore (about 0.15 s, counted); two "
    "processes share the 2 cores with the benchmark itself and take turns at SQLite's "
    "one writer lock"
)

APP = """
from notifycore import Notifications
notifications = Notifications()
notifications.create_hub("Bench").register_consumer(lambda e: None, name="noop", mode="queued")
"""


def _raw(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT, "
        "payload BLOB, visible_at REAL, attempts INTEGER DEFAULT 0, receipt TEXT)"
    )
    return db


def _fresh(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def enqueue_rates(directory: str, count: int, rounds: int) -> list[Measurement]:
    def ours_single(n: int) -> None:
        backend = SQLiteBackend(f"sqlite:///{_fresh(directory, 'ours.db')}")
        for _ in range(n):
            backend.enqueue("q", PAYLOAD)
        backend.close()

    def raw_single(n: int) -> None:
        db = _raw(_fresh(directory, "raw.db"))
        for _ in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO jobs (queue, payload, visible_at) VALUES (?, ?, ?)",
                ("q", PAYLOAD, time.time()),
            )
            db.execute("COMMIT")
        db.close()

    def ours_batch(n: int) -> None:
        backend = SQLiteBackend(f"sqlite:///{_fresh(directory, 'ours.db')}")
        for _ in range(n // 100):
            backend.enqueue_many("q", [PAYLOAD] * 100)
        backend.close()

    def raw_batch(n: int) -> None:
        db = _raw(_fresh(directory, "raw.db"))
        for _ in range(n // 100):
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO jobs (queue, payload, visible_at) VALUES (?, ?, ?)",
                [("q", PAYLOAD, now)] * 100,
            )
            db.execute("COMMIT")
        db.close()

    medians = alternate(
        {
            "ours_single": lambda: rate_of(ours_single, count),
            "raw_single": lambda: rate_of(raw_single, count),
            "ours_batch": lambda: rate_of(ours_batch, count * 5),
            "raw_batch": lambda: rate_of(raw_batch, count * 5),
        },
        rounds,
    )
    return [
        Measurement(
            "SQLite enqueue, one per call",
            medians["ours_single"],
            "sqlite3 INSERT + COMMIT",
            medians["raw_single"],
            "jobs/s",
            limit=WRITE_LIMIT,
        ),
        Measurement(
            "SQLite enqueue_many, 100 per call",
            medians["ours_batch"],
            "sqlite3 executemany 100 + COMMIT",
            medians["raw_batch"],
            "jobs/s",
            limit=WRITE_LIMIT,
        ),
    ]


def drain_rates(directory: str, count: int, rounds: int) -> list[Measurement]:
    (Path(directory) / "bench_app.py").write_text(APP)
    # What installing a wheel does; __pycache__ is ignored by git.
    compileall.compile_dir(Path(notifycore.__file__).parent, quiet=1)

    def fill(path: str) -> None:
        n = Notifications(config={"BACKEND_URL": f"sqlite:///{path}"}, environ={})
        hub = n.create_hub("Bench")
        hub.register_consumer(lambda e: None, name="noop", mode="queued")
        from notifycore import Event

        n.send_many(Event(None, "bench", "x" * 200) for _ in range(count))
        n.close()

    def drain(workers: int) -> float:
        path = _fresh(directory, "drain.db")
        fill(path)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
            "NOTIFYCORE_BACKEND_URL": f"sqlite:///{path}",
            "PYTHONPATH": directory,
            "NOTIFYCORE_LOAD_PLUGINS": "",
        }
        started = time.perf_counter()
        processes = [
            subprocess.Popen(
                [NOTIFYCORE, "worker", "--app", "bench_app", "--burst"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        for p in processes:
            p.wait(timeout=600)
        return count / (time.perf_counter() - started)

    def raw_drain() -> float:
        n = count
        db = _raw(_fresh(directory, "rawdrain.db"))
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO jobs (queue, payload, visible_at) VALUES (?, ?, 0)", [("q", PAYLOAD)] * n
        )
        db.execute("COMMIT")
        started = time.perf_counter()
        while True:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "UPDATE jobs SET visible_at = ?, attempts = attempts + 1, receipt = 'r' WHERE id = "
                "(SELECT id FROM jobs WHERE queue = 'q' AND visible_at <= ? ORDER BY id LIMIT 1) "
                "RETURNING id, payload",
                (time.time() + 60, time.time()),
            ).fetchone()
            db.execute("COMMIT")
            if row is None:
                break
            json.loads(row[1])
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM jobs WHERE id = ?", (row[0],))
            db.execute("COMMIT")
        rate = n / (time.perf_counter() - started)
        db.close()
        return rate

    def in_process() -> float:
        from notifycore import Worker

        path = _fresh(directory, "drain.db")
        fill(path)
        n = Notifications(config={"BACKEND_URL": f"sqlite:///{path}"}, environ={})
        n.create_hub("Bench").register_consumer(lambda e: None, name="noop", mode="queued")
        started = time.perf_counter()
        done = Worker(n).drain()
        rate = done / (time.perf_counter() - started)
        n.close()
        return rate

    medians = alternate(
        {"raw": raw_drain, "thread": in_process, "one": lambda: drain(1), "two": lambda: drain(2)},
        rounds,
    )
    raw = medians["raw"]
    return [
        Measurement(
            "SQLite drain, Worker.drain() in one thread",
            medians["thread"],
            "sqlite3 reserve + delete loop",
            raw,
            "jobs/s",
            aim=0.7,
            limit=DRAIN_LIMIT,
        ),
        Measurement(
            "SQLite drain, 1 worker process (incl. start-up)",
            medians["one"],
            "sqlite3 reserve + delete loop",
            raw,
            "jobs/s",
            aim=0.7,
            limit=DRAIN_LIMIT + PROCESS_LIMIT,
        ),
        Measurement(
            "SQLite drain, 2 worker processes (incl. start-up)",
            medians["two"],
            "sqlite3 reserve + delete loop",
            raw,
            "jobs/s",
            note=f"{medians['two'] / medians['one']:.2f}x one process",
            aim=0.7,
            limit=DRAIN_LIMIT + PROCESS_LIMIT,
        ),
    ]


PUBLISHER = """
import sys, time, json
from notifycore.backends.sqlite import SQLiteBackend
import sqlite3
path, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "ours":
    b = SQLiteBackend("sqlite:///" + path)
    publish = lambda data: b.publish("s", data)
else:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS msgs (id INTEGER PRIMARY KEY, data BLOB)")
    def publish(data):
        db.execute("BEGIN IMMEDIATE"); db.execute("INSERT INTO msgs (data) VALUES (?)", (data,)); db.execute("COMMIT")
time.sleep(0.3)
for i in range(count):
    publish(json.dumps({"t": time.time()}).encode())
    time.sleep(0.005)
"""


def latency(directory: str, count: int, rounds: int) -> list[Measurement]:
    script = Path(directory) / "publisher.py"
    script.write_text(textwrap.dedent(PUBLISHER))

    def ours() -> list[float]:
        path = _fresh(directory, "lat.db")
        backend = SQLiteBackend(f"sqlite:///{path}")
        child = subprocess.Popen([sys.executable, str(script), path, "ours", str(count)])
        got: list[float] = []
        cursor = "0"
        deadline = time.monotonic() + 120
        while len(got) < count and time.monotonic() < deadline:
            batch = backend.read("s", cursor, block=1.0)
            now = time.time()
            for m in batch.messages:
                got.append(now - json.loads(m.data)["t"])
                cursor = m.id
        child.wait(60)
        backend.close()
        return got

    def raw() -> list[float]:
        path = _fresh(directory, "rawlat.db")
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS msgs (id INTEGER PRIMARY KEY, data BLOB)")
        child = subprocess.Popen([sys.executable, str(script), path, "raw", str(count)])
        got: list[float] = []
        cursor = 0
        deadline = time.monotonic() + 120
        while len(got) < count and time.monotonic() < deadline:
            rows = db.execute(
                "SELECT id, data FROM msgs WHERE id > ? ORDER BY id", (cursor,)
            ).fetchall()
            now = time.time()
            for row_id, data in rows:
                got.append(now - json.loads(data)["t"])
                cursor = row_id
            if not rows:
                time.sleep(0.01)
        child.wait(60)
        db.close()
        return got

    mine: list[float] = []
    base: list[float] = []
    for _ in range(rounds):  # in turns, so that a busy spell of the machine hits both sides
        mine.extend(ours())
        base.extend(raw())
    rows = []
    for q in (50, 99):
        # For latency the figures are milliseconds, and lower is better.
        rows.append(
            Measurement(
                f"cross-process publish -> follow, p{q} latency",
                percentile_ms(mine, q),
                "sqlite3 poll every 10 ms",
                percentile_ms(base, q),
                "ms",
                note="lower is better",
                limit=(
                    "the 10 ms poll of PRAGMA data_version on both sides (a publish from "
                    "another process wakes nobody); not the cores"
                ),
            )
        )
    return rows


def run(quick: bool = False) -> list[Measurement]:
    count, rounds = (2_000, 2) if quick else (10_000, 5)
    with tempfile.TemporaryDirectory() as directory:
        return [
            *enqueue_rates(directory, count, rounds),
            *drain_rates(directory, count, rounds),
            *latency(directory, 100 if quick else 500, 2),
        ]
