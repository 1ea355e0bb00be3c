"""Every Redis key notifycore writes, derived in one place.

A stream and a queue each own a small set of keys that scripts touch
together; they are all built here from the prefix and the name, so a
cluster layout (issue 16: one hash slot per stream or queue, with a hash tag
around the name) changes this module only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeySpace", "QueueKeys", "StreamKeys"]


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The keys of one stream."""

    #: The Redis Stream of messages (field ``d``).
    stream: str
    #: A hash: ``trimmed``, the newest id trimming removed.
    meta: str
    #: A hash: per publisher, the token and ids of its last call (idempotent retries).
    publishers: str


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one job queue."""

    #: The Redis Stream of jobs (fields ``p`` payload, ``a`` attempts, ``e`` last error),
    #: read through one consumer group.
    jobs: str
    #: A sorted set: reserved job id -> deadline of its lease (ms).
    leases: str
    #: A hash: ``a:<id>`` attempts, ``r:<id>`` receipt, ``e:<id>`` last error of reserved jobs.
    state: str
    #: A sorted set: delayed job token -> when it is due (ms).
    delayed: str
    #: A hash: ``<token>:p``, ``<token>:a``, ``<token>:e`` of delayed jobs.
    delayed_data: str
    #: A hash of publisher tokens, as for streams.
    publishers: str
    #: A Redis Stream of dead letters (``p``, ``a``, ``e``, ``t`` failed at ms, ``q`` queue).
    dead: str

    def for_reserve(self) -> list[str]:
        """KEYS of the reserve and retry scripts."""
        return [self.jobs, self.leases, self.state, self.delayed, self.delayed_data]

    def owned(self) -> list[str]:
        """KEYS of the scripts that finish a reserved job."""
        return [self.jobs, self.leases, self.state]


#: Most names whose keys a key space remembers (it forgets them all past this).
_REMEMBERED = 4096


class KeySpace:
    """The names of every key under ``prefix`` (those of recent names remembered: a
    publish or a reservation needs them every time)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._streams: dict[str, StreamKeys] = {}
        self._queues: dict[str, QueueKeys] = {}

    def stream(self, name: str) -> StreamKeys:
        keys = self._streams.get(name)
        if keys is None:
            if len(self._streams) >= _REMEMBERED:
                self._streams.clear()
            base = f"{self.prefix}s:{name}"
            keys = StreamKeys(base, f"{self.prefix}sm:{name}", f"{self.prefix}sp:{name}")
            self._streams[name] = keys
        return keys

    def queue(self, name: str) -> QueueKeys:
        keys = self._queues.get(name)
        if keys is None:
            if len(self._queues) >= _REMEMBERED:
                self._queues.clear()
            base = f"{self.prefix}q:{name}"
            keys = QueueKeys(
                jobs=base,
                leases=f"{base}:leases",
                state=f"{base}:jobs",
                delayed=f"{base}:delayed",
                delayed_data=f"{base}:delayed-data",
                publishers=f"{base}:publishers",
                dead=f"{base}:dead",
            )
            self._queues[name] = keys
        return keys

    def value(self, key: str) -> str:
        """The key of a key-value store entry."""
        return f"{self.prefix}kv:{key}"
