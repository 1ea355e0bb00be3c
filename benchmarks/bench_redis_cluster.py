"""notify-redis on a three-master Redis Cluster beside one Redis server, same run.

A private redis-server and a Redis Cluster of three masters with one replica each
(``notify_redis.cluster_testing``) are started side by side on 127.0.0.1. Each row
runs two sides in alternating rounds (the order swapped every round), on warm
connections, and reports each side's median round:

- publish -> follow, one per call: ``publish()`` in a thread, ``follow()`` here,
  payloads carrying their send time; the cluster beside the one server, then the
  cluster with ``REDIS_WAIT_REPLICAS = 1`` beside the cluster without.
- enqueue -> reserve + ack, one per call: ``enqueue()`` of a round's jobs, then
  ``reserve()`` + ``ack()`` of each; the same two comparisons.

What these rows show on two cores: a cluster does not make one stream or queue
faster — its keys are on one master, one round trip per call as on one server —
it adds masters for more streams and queues (and replicas for failover), which
one machine's two cores cannot show. ``WAIT 1`` adds the replica's round trip to
every publish and enqueue (sent in the same write as the command).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_redis import _follow_round
from benchmarks.common import Measurement, timed_payload
from benchmarks.rounds import Round, Side, alternate
from notify_redis.cluster_testing import RedisClusterServers
from notify_redis.testing import RedisServer

NAME = "Redis Cluster beside one Redis server"


@contextmanager
def servers() -> Iterator[tuple[RedisServer, RedisClusterServers]]:
    """One redis-server and a cluster of 3 masters + 3 replicas, started in parallel."""
    directory = Path(tempfile.mkdtemp())
    (directory / "one").mkdir()
    single = RedisServer(directory / "one")
    cluster = RedisClusterServers(directory / "cluster", masters=3, replicas=1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(single.start), pool.submit(cluster.start)]
    try:
        for future in futures:
            future.result()
        yield single, cluster
    finally:
        single.stop()
        cluster.shutdown()
        shutil.rmtree(directory, ignore_errors=True)


def _backend(url: str, **options: Any) -> Any:
    from notify_redis.backend import RedisBackend

    return RedisBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}:", **options)


def _follow_side(backend: Any, count: int) -> tuple[Callable[[], Round], Callable[[], None]]:
    import threading

    stop = threading.Event()
    following = backend.follow("s", "0-0", stop=stop, poll=1.0)

    def read() -> list[bytes]:
        return [m.data for m in next(following).messages]

    def publish(items: list[bytes]) -> None:
        backend.publish("s", items[0])

    def close() -> None:
        stop.set()
        backend.close()

    return (lambda: _follow_round(publish, read, count, 1)), close


def _queue_side(backend: Any, count: int) -> tuple[Callable[[], Round], Callable[[], None]]:
    import time

    payload = timed_payload(0)

    def round_() -> Round:
        started = time.perf_counter()
        for _ in range(count):
            backend.enqueue("q", payload)
        done = 0
        while done < count:
            job = backend.reserve("q", visibility_timeout=60)
            if job is None:
                break
            backend.ack(job)
            done += 1
        return done / (time.perf_counter() - started), []

    return round_, backend.close


def _pair(
    make: Callable[[Any, int], tuple[Callable[[], Round], Callable[[], None]]],
    ours: Any,
    theirs: Any,
    count: int,
    rounds: int,
) -> tuple[Side, Side]:
    first, close_first = make(ours, count)
    second, close_second = make(theirs, count)
    try:
        return alternate(first, second, rounds)
    finally:
        close_first()
        close_second()


def run(quick: bool = False) -> list[Measurement]:
    count = 300 if quick else 2_000
    rounds = 3 if quick else 5
    note = f"median of {rounds} alternating rounds"
    rows: list[Measurement] = []
    with servers() as (single, cluster):
        for label, make, unit in (
            ("publish -> follow", _follow_side, "msgs/s"),
            ("enqueue -> reserve + ack", _queue_side, "jobs/s"),
        ):
            ours, one = _pair(make, _backend(cluster.url), _backend(single.url), count, rounds)
            rows.append(
                Measurement(
                    f"Redis Cluster (3 masters) {label}, one per call",
                    ours.rate,
                    "one redis-server",
                    one.rate,
                    unit,
                    note,
                )
            )
            waited, plain = _pair(
                make,
                _backend(cluster.url, wait_replicas=1, wait_timeout=5),
                _backend(cluster.url),
                count,
                rounds,
            )
            rows.append(
                Measurement(
                    f"Redis Cluster {label} with REDIS_WAIT_REPLICAS=1, one per call",
                    waited.rate,
                    "the cluster without WAIT",
                    plain.rate,
                    unit,
                    note,
                )
            )
    return rows
