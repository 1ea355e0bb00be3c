"""notify-redis beside raw redis-py, on a private redis-server started for the run.

Each row runs notifycore and redis-py in alternating rounds (the order swapped
every round) on warm connections, and reports each side's median round.

- publish -> follow: one thread publishes, the main thread follows with blocking
  reads, payloads carrying their send time. notifycore: ``publish()`` (one Lua
  script that adds, trims exactly, records the trim and makes retries
  idempotent) and ``follow()`` (``XREAD BLOCK`` pipelined with a read of the
  trim mark). Raw: ``XADD MAXLEN = n`` and ``XREAD BLOCK``. Batched:
  ``publish_many`` of 100 beside a pipeline of 100 ``XADD``. Latency rows: the
  median over rounds of each round's percentile.
- enqueue -> ack: notifycore ``enqueue``/``enqueue_many`` then ``reserve`` +
  ``ack`` per job (each one script, leases and receipts included). Raw:
  ``XADD`` then ``XREADGROUP COUNT 1`` + ``XACK`` per job; batched, a pipeline
  of 100 ``XADD`` and ``XREADGROUP COUNT 100`` + one ``XACK`` of 100 ids beside
  notifycore's ``enqueue_many``, ``reserve_many`` and ``ack_many`` of 100.

What limits these rows on two cores: every operation is a round trip to a
redis-server on the same machine, so a row is the client's Python per call
plus the server's time per command, and the two (three, with a follower
thread) share both cores.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import Measurement, timed_payload
from benchmarks.rounds import Round, Side, alternate
from notify_redis.testing import RedisServer

NAME = "Redis backend beside redis-py"
MAXLEN = 100_000
RAW_FOLLOW = "redis-py XADD + XREAD BLOCK"
RAW_QUEUE = "redis-py XADD + XREADGROUP + XACK"


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server (no persistence) for one benchmark run."""
    directory = tempfile.mkdtemp()
    server = RedisServer(Path(directory))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _follow_round(
    publish: Callable[[list[bytes]], object],
    read: Callable[[], list[bytes]],
    count: int,
    batch: int,
) -> Round:
    """Publish ``count`` messages in a thread, ``batch`` per call; follow them here."""
    latencies: list[float] = []

    def produce() -> None:
        for start in range(0, count, batch):
            publish([timed_payload(i) for i in range(start, min(start + batch, count))])

    started = time.perf_counter()
    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 120
    while len(latencies) < count and time.monotonic() < deadline:
        for data in read():
            latencies.append(time.time() - json.loads(data)["t"])
    elapsed = time.perf_counter() - started
    thread.join()
    return len(latencies) / elapsed, latencies


def _follow_pair(url: str, count: int, batch: int, rounds: int) -> tuple[Side, Side]:
    """notifycore and raw redis-py in alternating rounds, publishing ``batch`` per call."""
    import redis

    from notify_redis.backend import RedisBackend

    backend = RedisBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}:", stream_maxlen=MAXLEN)
    stop = threading.Event()
    following = backend.follow("s", "0-0", stop=stop, poll=1.0)

    def ours_read() -> list[bytes]:
        return [m.data for m in next(following).messages]

    def ours_publish(items: list[bytes]) -> None:
        if len(items) == 1:
            backend.publish("s", items[0])
        else:
            backend.publish_many("s", items)

    client = redis.Redis.from_url(url)
    reader = redis.Redis.from_url(url)
    key = f"raw-{uuid.uuid4().hex[:6]}"
    cursor = {"id": b"0-0"}

    def raw_publish(items: list[bytes]) -> None:
        if len(items) == 1:
            client.xadd(key, {"d": items[0]}, maxlen=MAXLEN, approximate=False)
        else:
            pipe = client.pipeline(transaction=False)
            for data in items:
                pipe.xadd(key, {"d": data}, maxlen=MAXLEN, approximate=False)
            pipe.execute()

    def raw_read() -> list[bytes]:
        got = reader.xread({key: cursor["id"]}, block=1000)
        if not got:
            return []
        entries = got[0][1]
        cursor["id"] = entries[-1][0]
        return [fields[b"d"] for _, fields in entries]

    try:
        return alternate(
            lambda: _follow_round(ours_publish, ours_read, count, batch),
            lambda: _follow_round(raw_publish, raw_read, count, batch),
            rounds,
        )
    finally:
        stop.set()
        backend.close()
        client.close()
        reader.close()


def follow_rows(url: str, count: int, rounds: int) -> list[Measurement]:
    rows: list[Measurement] = []
    note = f"median of {rounds} alternating rounds"
    for batch in (1, 100):
        ours, raw = _follow_pair(url, max(count // rounds, 100), batch, rounds)
        label = "one per call" if batch == 1 else "batches of 100"
        rows.append(
            Measurement(
                f"Redis publish -> follow, {label}", ours.rate, RAW_FOLLOW, raw.rate, "msgs/s", note
            )
        )
        if batch == 1:
            for q in (50, 99):
                rows.append(
                    Measurement(
                        f"Redis publish -> follow p{q} latency, one per call",
                        ours.percentile(q),
                        RAW_FOLLOW,
                        raw.percentile(q),
                        "ms",
                        note=f"lower is better; {note}",
                    )
                )
    return rows


def _queue_pair(url: str, count: int, batch: int, rounds: int) -> tuple[Side, Side]:
    """Enqueue ``count`` jobs, then reserve and ack them, ``batch`` per call: both sides."""
    import redis

    from notify_redis.backend import RedisBackend

    payload = timed_payload(0)
    backend = RedisBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}:")
    client = redis.Redis.from_url(url)
    key = f"rawq-{uuid.uuid4().hex[:6]}"
    client.xgroup_create(key, "g", id="0", mkstream=True)

    def ours() -> Round:
        started = time.perf_counter()
        for _ in range(0, count, batch):
            if batch == 1:
                backend.enqueue("q", payload)
            else:
                backend.enqueue_many("q", [payload] * batch)
        done = 0
        while done < count:
            if batch == 1:
                job = backend.reserve("q", visibility_timeout=60)
                if job is None:
                    break
                backend.ack(job)
                done += 1
            else:
                jobs = backend.reserve_many("q", batch, visibility_timeout=60)
                if not jobs:
                    break
                done += backend.ack_many(jobs)
        return done / (time.perf_counter() - started), []

    def raw() -> Round:
        started = time.perf_counter()
        for _ in range(0, count, batch):
            if batch == 1:
                client.xadd(key, {"p": payload})
            else:
                pipe = client.pipeline(transaction=False)
                for _ in range(batch):
                    pipe.xadd(key, {"p": payload})
                pipe.execute()
        done = 0
        while done < count:
            got = client.xreadgroup("g", "c", {key: ">"}, count=batch)
            if not got:
                break
            ids = [entry_id for entry_id, _ in got[0][1]]
            client.xack(key, "g", *ids)
            done += len(ids)
        return done / (time.perf_counter() - started), []

    try:
        return alternate(ours, raw, rounds)
    finally:
        backend.close()
        client.close()


def queue_rows(url: str, count: int, rounds: int) -> list[Measurement]:
    rows: list[Measurement] = []
    for batch in (1, 100):
        ours, raw = _queue_pair(url, max(count // rounds, 100), batch, rounds)
        label = "one per call" if batch == 1 else "batches of 100"
        rows.append(
            Measurement(
                f"Redis enqueue -> reserve + ack, {label}",
                ours.rate,
                RAW_QUEUE,
                raw.rate,
                "jobs/s",
                f"median of {rounds} alternating rounds",
            )
        )
    return rows


def run(quick: bool = False) -> list[Measurement]:
    count = 2_000 if quick else 10_000
    rounds = 3 if quick else 7
    with redis_server() as server:
        return [
            *follow_rows(server.url, count, rounds),
            *queue_rows(server.url, count, rounds),
        ]
