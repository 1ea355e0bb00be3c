"""notify-redis beside raw redis-py, on a private redis-server started for the run.

- publish -> follow: one thread publishes, another follows with blocking reads,
  payloads carrying their send time. notifycore: ``publish()`` (one Lua script
  that adds, trims exactly, records the trim and makes retries idempotent) and
  ``follow()`` (``XREAD BLOCK`` pipelined with a read of the trim mark). Raw:
  ``XADD MAXLEN = n`` and ``XREAD BLOCK``. Batched: ``publish_many`` of 100 beside
  a pipeline of 100 ``XADD``.
- enqueue -> ack: notifycore ``enqueue``/``enqueue_many`` then ``reserve`` +
  ``ack`` per job (each one script, leases and receipts included). Raw:
  ``XADD`` then ``XREADGROUP COUNT 1`` + ``XACK`` per job; batched, a pipeline
  of 100 ``XADD`` and ``XREADGROUP COUNT 100`` + one ``XACK`` of 100 ids beside
  notifycore's ``enqueue_many``, ``reserve_many`` and ``ack_many`` of 100.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import Measurement, percentile_ms, timed_payload
from notify_redis.testing import RedisServer

NAME = "Redis backend beside redis-py"
MAXLEN = 100_000


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


def _follow_run(
    publish_batch: object, read: object, count: int, batch: int
) -> tuple[float, list[float]]:
    """Publish ``count`` messages in a thread, ``batch`` per call; follow them; rate and latencies."""
    latencies: list[float] = []
    started = time.perf_counter()

    def produce() -> None:
        for start in range(0, count, batch):
            publish_batch([timed_payload(i) for i in range(start, min(start + batch, count))])  # type: ignore[operator]

    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 120
    while len(latencies) < count and time.monotonic() < deadline:
        for data in read():  # type: ignore[operator]
            latencies.append(time.time() - json.loads(data)["t"])
    elapsed = time.perf_counter() - started
    thread.join()
    return count / elapsed, latencies


def _follow_pair(url: str, count: int, batch: int) -> tuple[float, list[float], float, list[float]]:
    """notifycore and raw redis-py, publishing ``batch`` per call: rates and latencies."""
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

    ours_rate, ours_lat = _follow_run(ours_publish, ours_read, count, batch)
    stop.set()
    backend.close()

    client = redis.Redis.from_url(url)
    reader = redis.Redis.from_url(url)
    key = f"raw-{uuid.uuid4().hex[:6]}"
    raw_cursor = {"id": b"0-0"}

    def raw_publish(items: list[bytes]) -> None:
        if len(items) == 1:
            client.xadd(key, {"d": items[0]}, maxlen=MAXLEN, approximate=False)
        else:
            pipe = client.pipeline(transaction=False)
            for data in items:
                pipe.xadd(key, {"d": data}, maxlen=MAXLEN, approximate=False)
            pipe.execute()

    def raw_read() -> list[bytes]:
        got = reader.xread({key: raw_cursor["id"]}, block=1000)
        if not got:
            return []
        entries = got[0][1]
        raw_cursor["id"] = entries[-1][0]
        return [fields[b"d"] for _, fields in entries]

    raw_rate, raw_lat = _follow_run(raw_publish, raw_read, count, batch)
    client.close()
    reader.close()
    return ours_rate, ours_lat, raw_rate, raw_lat


def follow_rows(url: str, count: int) -> list[Measurement]:
    rows: list[Measurement] = []
    for batch in (1, 100):
        ours_rate, ours_lat, raw_rate, raw_lat = _follow_pair(url, count, batch)
        label = "one per call" if batch == 1 else "batches of 100"
        rows.append(
            Measurement(
                f"Redis publish -> follow, {label}",
                ours_rate,
                "redis-py XADD + XREAD BLOCK",
                raw_rate,
                "msgs/s",
            )
        )
        if batch == 1:
            for q in (50, 99):
                rows.append(
                    Measurement(
                        f"Redis publish -> follow p{q} latency, one per call",
                        percentile_ms(ours_lat, q),
                        "redis-py XADD + XREAD BLOCK",
                        percentile_ms(raw_lat, q),
                        "ms",
                        note="lower is better",
                    )
                )
    return rows


def queue_rows(url: str, count: int) -> list[Measurement]:
    import redis

    from notify_redis.backend import RedisBackend

    rows: list[Measurement] = []
    payload = timed_payload(0)
    for batch in (1, 100):
        backend = RedisBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}:")
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
        ours = done / (time.perf_counter() - started)
        backend.close()

        client = redis.Redis.from_url(url)
        key = f"rawq-{uuid.uuid4().hex[:6]}"
        client.xgroup_create(key, "g", id="0", mkstream=True)
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
        raw = done / (time.perf_counter() - started)
        client.close()
        label = "one per call" if batch == 1 else "batches of 100"
        rows.append(
            Measurement(
                f"Redis enqueue -> reserve + ack, {label}",
                ours,
                "redis-py XADD + XREADGROUP + XACK",
                raw,
                "jobs/s",
            )
        )
    return rows


def run(quick: bool = False) -> list[Measurement]:
    count = 2_000 if quick else 10_000
    with redis_server() as server:
        return [*follow_rows(server.url, count), *queue_rows(server.url, count)]
