"""Every Redis key notifycore writes, derived in one place.

A stream and a queue each own a small set of keys that scripts touch
together; they are all built here from the prefix and the name. The layout
(the same on one server, behind Sentinel and on a Redis Cluster)::

    <prefix>s:{<stream>}               the stream         (+ :meta, :publishers)
    <prefix>q:{<queue>}                the queue's jobs   (+ :leases, :jobs, :delayed,
                                                          :delayed-data, :publishers, :dead)
    <prefix>kv:<key>                   one key-value entry, claim or counter

The ``{...}`` is a Redis Cluster **hash tag**: only what is between the braces
is hashed, so every key of one stream (or one queue) lies in one hash slot, on
one master, and a Lua script or a ``MULTI`` over them is allowed there, while
different streams and queues spread over the masters. Every key of a name starts
with the same ``<prefix><kind>:{<name>}`` and only its suffix differs, so they
share their hash tag whatever braces the prefix or the name hold.

**Adding keys** (another store in this plugin, a per-user inbox): build them
with :meth:`KeySpace.tagged` — ``tagged("inbox", user)`` is
``<prefix>inbox:{<user>}``; append ``:<suffix>`` for its other keys — so that
everything one script or transaction touches shares one tag, and pick a kind
not used above (``s``, ``q``, ``kv``).
"""

from __future__ import annotations

import hashlib
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

    def tagged(self, kind: str, name: str) -> str:
        """``<prefix><kind>:{<name>}``: the first key of ``name``'s set, and the start of
        the others (``<that>:<suffix>``), all in one hash slot."""
        if not name or name[0] == "}":
            # "{}" is no hash tag (Redis would hash each whole key, one slot per key): tag
            # such a name with a digest of it, and keep the name after the tag.
            digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            return f"{self.prefix}{kind}:{{#{digest}}}{name}"
        return f"{self.prefix}{kind}:{{{name}}}"

    def stream(self, name: str) -> StreamKeys:
        keys = self._streams.get(name)
        if keys is None:
            if len(self._streams) >= _REMEMBERED:
                self._streams.clear()
            base = self.tagged("s", name)
            keys = StreamKeys(base, f"{base}:meta", f"{base}:publishers")
            self._streams[name] = keys
        return keys

    def queue(self, name: str) -> QueueKeys:
        keys = self._queues.get(name)
        if keys is None:
            if len(self._queues) >= _REMEMBERED:
                self._queues.clear()
            base = self.tagged("q", name)
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
