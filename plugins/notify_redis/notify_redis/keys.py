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


class KeySpace:
    """The names of every key under ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def stream(self, name: str) -> StreamKeys:
        base = f"{self.prefix}s:{name}"
        return StreamKeys(base, f"{self.prefix}sm:{name}", f"{self.prefix}sp:{name}")

    def queue(self, name: str) -> QueueKeys:
        base = f"{self.prefix}q:{name}"
        return QueueKeys(
            jobs=base,
            leases=f"{base}:leases",
            state=f"{base}:jobs",
            delayed=f"{base}:delayed",
            delayed_data=f"{base}:delayed-data",
            publishers=f"{base}:publishers",
            dead=f"{base}:dead",
        )

    def value(self, key: str) -> str:
        """The key of a key-value store entry."""
        return f"{self.prefix}kv:{key}"
