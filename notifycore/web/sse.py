"""Server-Sent Events framing for every web adapter.

A frame carries ``id:`` (the stream id, for ``Last-Event-ID``), ``event:``
(the event type; left out for unnamed frames, which browsers dispatch as
``message``) and ``data:`` (the event JSON). Newlines inside the data are
framed as further ``data:`` lines, never trusted, so an event cannot inject
frames of its own. :class:`FrameCache` makes each message's frame once per
process, however many clients receive it.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

from notifycore.backends.base import StreamMessage, StreamRead
from notifycore.event import loads_json

__all__ = [
    "HEADERS",
    "HEARTBEAT",
    "FrameCache",
    "comment",
    "event_type_of",
    "frame",
    "reset_frame",
    "retry_frame",
]

#: Response headers of every stream: no caching, no proxy buffering.
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Content-Type": "text/event-stream; charset=utf-8",
}


def _line_safe(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def frame(message_id: str, event_type: str | None, data: bytes) -> bytes:
    """One SSE frame; every line of ``data`` gets its own ``data:`` field.

    Without ``event_type`` the frame has no ``event:`` field: a browser's
    ``EventSource.onmessage`` receives it.
    """
    text = data.decode("utf-8", errors="replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    body = "data: " + text.replace("\n", "\ndata: ") + "\n"  # a data: line per line
    name = "" if event_type is None else f"event: {_line_safe(event_type)}\n"
    return f"id: {_line_safe(message_id)}\n{name}{body}\n".encode()


def comment(text: str = "") -> bytes:
    """A comment line (heartbeat): ignored by EventSource, keeps proxies from closing the stream."""
    return f": {_line_safe(text)}\n\n".encode()


#: The heartbeat comment every adapter sends on an idle stream.
HEARTBEAT = comment("heartbeat")


def retry_frame(milliseconds: int) -> bytes:
    """The reconnection delay hint."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def reset_frame(stream: str, resume_id: str | None) -> bytes:
    """Tells a client it missed events that are no longer kept: it should reload its state."""
    data = json.dumps({"stream": stream, "reason": "events missed are no longer kept"}).encode()
    return frame(resume_id or "", "reset", data)


def event_type_of(data: bytes) -> str:
    """The ``event_type`` of an event's JSON (``message`` when it has none)."""
    try:
        # orjson's speed when installed, the same values and errors; no number is read.
        parsed = loads_json(data, numbers=False)
    except ValueError:
        return "message"
    kind = parsed.get("event_type") if isinstance(parsed, dict) else None
    return kind if isinstance(kind, str) and kind else "message"


class FrameCache:
    """Frames by (stream, id), made once per process however many clients send them."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._frames: OrderedDict[tuple[str, str, bytes, bool], bytes] = OrderedDict()
        # The newest batches (at most ``size``), with their frames joined: every client of a
        # stream is handed the same batch objects, so the first one to write one joins it.
        # Several per stream: a client catching up after a burst writes several in one go.
        # Keyed by the batch's id(), which the batch kept here cannot hand to another.
        self._batches: dict[tuple[str, bool, int], tuple[StreamRead, bytes]] = {}
        self._lock = threading.Lock()
        self.made = 0

    def batch(self, stream: str, batch: StreamRead, *, named: bool = True) -> bytes:
        """The frames of every message of ``batch``, joined once however many clients write it."""
        key = (stream, named, id(batch))
        found = self._batches.get(key)
        if found is not None and found[0] is batch:
            return found[1]
        chunk = b"".join([self.get(stream, m, named=named) for m in batch.messages])
        with self._lock:
            self._batches[key] = (batch, chunk)
            if len(self._batches) > self.size:  # the oldest batch goes first
                del self._batches[next(iter(self._batches))]
        return chunk

    def get(self, stream: str, message: StreamMessage, *, named: bool = True) -> bytes:
        """The frame of ``message``; ``named=False`` leaves out the ``event:`` field."""
        # The data is part of the key: ids restart when a backend is replaced or emptied.
        # (A bytes object caches its hash, and every client shares the batch's bytes.)
        key = (stream, message.id, message.data, named)
        with self._lock:
            found = self._frames.get(key)
            if found is not None:
                self._frames.move_to_end(key)
                return found
        made = frame(message.id, event_type_of(message.data) if named else None, message.data)
        with self._lock:
            self.made += 1
            self._frames[key] = made
            if len(self._frames) > self.size:
                self._frames.popitem(last=False)
        return made
