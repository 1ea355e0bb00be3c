"""Backends: where streams and queues live. ``memory`` and ``sqlite`` are built in; others are
plugins. ``base`` is the contract (seven primitives, the rest derived), ``capabilities`` the
optional protocols (claims, a key-value store, counters)."""

from notifycore.backends.base import (
    Backend,
    DeadLetter,
    Job,
    QueuedJob,
    StreamMessage,
    StreamRead,
)

__all__ = ["Backend", "DeadLetter", "Job", "QueuedJob", "StreamMessage", "StreamRead"]
