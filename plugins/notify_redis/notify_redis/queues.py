"""Job queues on Redis: one Redis Stream per queue, read through a consumer group.

Reserving is one script: due delayed jobs move onto the stream, a job whose
lease ran out is taken over with ``XCLAIM``, else a new one is read with
``XREADGROUP``; its lease (a sorted set of deadlines: the visibility timeout)
and a receipt are recorded. ``ack``, ``retry``, ``release`` and
``dead_letter`` are scripts that act only while the receipt matches — each
overrides the base class's derived operation because Redis does it in one
atomic step. Delayed jobs wait in a sorted set; dead letters are a stream of
their own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis

from notify_redis import scripts
from notify_redis.connection import MAX_BLOCK, RedisConnection
from notify_redis.keys import KeySpace, QueueKeys
from notify_redis.streams import fields, text
from notifycore.backends.base import DeadLetter, Job, QueuedJob

__all__ = ["GROUP", "RedisQueues"]

GROUP = "notifycore-workers"
#: Most jobs one script call takes or finishes: Lua's unpack() has a limit on arguments,
#: and a script that fails half-way is not rolled back.
_CHUNK = 500


def _payloads(items: Iterable[bytes]) -> list[bytes]:
    payloads = list(items)
    for payload in payloads:
        if not isinstance(payload, bytes):
            raise TypeError(f"job payloads are bytes, not {type(payload).__name__}")
    return payloads


class RedisQueues:
    """The queue operations of :class:`~notify_redis.backend.RedisBackend`."""

    connection: RedisConnection
    keys: KeySpace
    consumer: str
    _groups: set[str]

    # -- enqueueing --------------------------------------------------------------------------

    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        if delay <= 0:
            return self.enqueue_many(queue, (payload,))[0]
        (payload,) = _payloads((payload,))
        keys = self.keys.queue(queue)
        token = f"d{uuid.uuid4().hex}"
        connection = self.connection
        commands: list[tuple[Any, ...]] = [
            ("MULTI",),
            ("HSET", keys.delayed_data, f"{token}:p", payload, f"{token}:a", 0),
            ("ZADD", keys.delayed, int(time.time() * 1000) + int(delay * 1000), token),
            ("EXEC",),
        ]
        if connection.wait_replicas:
            commands.append(("WAIT", connection.wait_replicas, int(connection.wait_timeout * 1000)))
        with connection.calling("enqueue"):
            replies = connection.execute(*commands, key=keys.delayed)
            if connection.wait_replicas:
                connection.check_replicas(replies[-1])
        return token

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        items = _payloads(payloads)
        if not items:
            return []
        keys = self.keys.queue(queue)
        lane = self.connection.lane()
        args: list[Any] = [lane.publisher, lane.token(), *items]
        with self.connection.calling("enqueue"):
            ids = self.connection.evalsha(
                scripts.ENQUEUE, [keys.jobs, keys.publishers], args, durable=True
            )
        return [text(i) for i in ids]

    # -- reserving ---------------------------------------------------------------------------

    def _ensure_group(self, keys: QueueKeys, *, force: bool = False) -> None:
        if keys.jobs in self._groups and not force:
            return
        try:
            self.connection.client.xgroup_create(keys.jobs, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(keys.jobs)

    def _take(
        self, queue: str, keys: QueueKeys, visibility_timeout: float, count: int = 1
    ) -> tuple[list[Job], float, str]:
        """Up to ``count`` jobs; with none, how long (ms) until one may be due, and the newest
        entry of the stream (a blocking reserve waits for entries after it)."""
        receipt = self.connection.lane().token()
        args: list[str | int] = [
            GROUP,
            self.consumer,
            int(visibility_timeout * 1000),
            receipt,
            count,
        ]
        evalsha = self.connection.evalsha
        try:
            result = evalsha(scripts.RESERVE, keys.for_reserve(), args)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_group(keys, force=True)  # Redis lost it (restart, flush)
            result = evalsha(scripts.RESERVE, keys.for_reserve(), args)
        jobs = []
        for i in range(3, 3 + 4 * int(result[0]), 4):
            job_id, payload, attempts, error = result[i : i + 4]
            jobs.append(
                Job(
                    text(job_id),
                    queue,
                    bytes(payload),
                    int(attempts),
                    receipt,
                    text(error) if error else None,
                )
            )
        return jobs, float(result[1]), text(result[2])

    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        keys = self.keys.queue(queue)
        deadline = time.monotonic() + (block or 0)
        with self.connection.calling("reserve"):
            self._ensure_group(keys)
            while True:
                jobs, wait_ms, last = self._take(queue, keys, visibility_timeout)
                remaining = deadline - time.monotonic()
                if jobs or remaining <= 0:
                    return jobs[0] if jobs else None
                wait = min(remaining, MAX_BLOCK)
                if wait_ms >= 0:
                    wait = min(wait, wait_ms / 1000 + 0.001)
                # Wake on the next XADD after the newest entry the script saw.
                wait_ms = max(1, int(wait * 1000))
                self.connection.execute(
                    ("XREAD", "COUNT", 1, "BLOCK", wait_ms, "STREAMS", keys.jobs, last),
                    key=keys.jobs,
                )

    def reserve_many(self, queue: str, count: int, *, visibility_timeout: float) -> list[Job]:
        keys = self.keys.queue(queue)
        jobs: list[Job] = []
        with self.connection.calling("reserve"):
            self._ensure_group(keys)
            while len(jobs) < count:
                got = self._take(queue, keys, visibility_timeout, min(count - len(jobs), _CHUNK))
                if not got[0]:
                    break
                jobs.extend(got[0])
        return jobs

    # -- finishing: each a script that acts only while the receipt matches ------------------

    def _finish(self, lua: str, job: Job, keys: list[str], *args: Any) -> bool:
        with self.connection.calling("finish a job"):
            return bool(self.connection.evalsha(lua, keys, [GROUP, job.id, job.receipt, *args]))

    def ack(self, job: Job) -> bool:
        return self._finish(scripts.ACK, job, self.keys.queue(job.queue).owned())

    def ack_many(self, jobs: Iterable[Job]) -> int:
        by_queue: dict[str, list[Job]] = {}
        for job in jobs:
            by_queue.setdefault(job.queue, []).append(job)
        done = 0
        with self.connection.calling("ack"):
            for queue, group in by_queue.items():
                keys = self.keys.queue(queue).owned()
                for start in range(0, len(group), _CHUNK):
                    chunk = group[start : start + _CHUNK]
                    pairs = [part for job in chunk for part in (job.id, job.receipt)]
                    done += int(self.connection.evalsha(scripts.ACK_MANY, keys, [GROUP, *pairs]))
        return done

    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        keys = self.keys.queue(job.queue).for_reserve()
        return self._finish(scripts.RETRY, job, keys, int(max(delay, 0.0) * 1000), error)

    def release(self, job: Job) -> bool:
        return self._finish(scripts.RELEASE, job, self.keys.queue(job.queue).owned())

    def dead_letter(self, job: Job, *, error: str) -> bool:
        keys = self.keys.queue(job.queue)
        return self._finish(
            scripts.DEAD, job, [*keys.owned(), keys.dead], error, job.queue, job.attempts
        )

    # -- looking at a queue ------------------------------------------------------------------

    def browse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        """The stream's entries (waiting and reserved, in order), then the delayed jobs."""
        keys = self.keys.queue(queue)
        with self.connection.calling("browse"):
            client = self.connection.client
            entries = client.xrange(keys.jobs, count=limit)
            ids = [text(i) for i, _ in entries]
            state = client.hmget(keys.state, [f"a:{i}" for i in ids]) if ids else []
            listed = []
            for (_, raw), job_id, attempts in zip(entries, ids, state, strict=True):
                f = fields(raw)
                error = f.get("e")
                tries = int(attempts if attempts is not None else f.get("a", 0))
                listed.append(
                    QueuedJob(job_id, bytes(f["p"]), tries, None if error is None else text(error))
                )
            room = None if limit is None else limit - len(listed)
            if room is None or room > 0:
                tokens = [
                    text(t)
                    for t in client.zrange(keys.delayed, 0, -1 if room is None else room - 1)
                ]
                for token in tokens:
                    p, a, e = client.hmget(keys.delayed_data, [f"{token}:{k}" for k in "pae"])
                    if p is not None:
                        listed.append(
                            QueuedJob(token, bytes(p), int(a or 0), None if e is None else text(e))
                        )
        return listed

    def queue_length(self, queue: str) -> int:
        keys = self.keys.queue(queue)
        with self.connection.calling("queue_length"):
            pipe = self.connection.client.pipeline(transaction=False)
            pipe.xlen(keys.jobs)
            pipe.zcard(keys.delayed)
            waiting, delayed = pipe.execute()
        return int(waiting) + int(delayed)

    # -- dead letters: a stream of their own -------------------------------------------------

    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        with self.connection.calling("dead_letters"):
            entries = self.connection.client.xrange(self.keys.queue(queue).dead, count=limit)
        letters = []
        for entry_id, raw in entries:
            f = fields(raw)
            letters.append(
                DeadLetter(
                    text(entry_id),
                    queue,
                    bytes(f["p"]),
                    int(f["a"]),
                    text(f["e"]),
                    int(f["t"]) / 1000,
                )
            )
        return letters

    def _chosen(
        self, keys: QueueKeys, ids: Iterable[str] | None
    ) -> list[tuple[str, dict[str, bytes]]]:
        wanted = None if ids is None else set(ids)
        entries = self.connection.client.xrange(keys.dead)
        return [(text(i), fields(f)) for i, f in entries if wanted is None or text(i) in wanted]

    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        keys = self.keys.queue(queue)
        with self.connection.calling("requeue dead letters"):
            chosen = self._chosen(keys, ids)
            pipe = self.connection.client.pipeline(transaction=True)
            for entry_id, f in chosen:
                pipe.xadd(keys.jobs, {"p": f["p"], "a": 0})
                pipe.xdel(keys.dead, entry_id)
            pipe.execute()
        return len(chosen)

    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        keys = self.keys.queue(queue)
        with self.connection.calling("purge dead letters"):
            chosen = [i for i, _ in self._chosen(keys, ids)]
            if chosen:
                self.connection.client.xdel(keys.dead, *chosen)
        return len(chosen)
