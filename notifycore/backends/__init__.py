"""Backends: where streams and queues live. ``memory`` is built in; others are plugins."""

from notifycore.backends.base import Backend, DeadLetter, Job, StreamMessage, StreamRead

__all__ = ["Backend", "DeadLetter", "Job", "StreamMessage", "StreamRead"]
