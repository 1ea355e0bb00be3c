"""The envelopes the derived queue operations put around a job's payload.

A backend that implements only the primitives keeps nothing but payloads, so
:meth:`~notifycore.Backend.retry`, :meth:`~notifycore.Backend.release` and
:meth:`~notifycore.Backend.dead_letter` carry what must survive them inside the
payload they enqueue again:

- a **job envelope** (``b"\\x00NCJ1"``) holds the tries a job had and its last
  error; :class:`~notifycore.Job` opens it, so the next reservation reports
  the tries so far plus the one the backend counts;
- a **dead-letter envelope** (``b"\\x00NCD1"``) holds the error, the tries,
  when the job failed and the dead letter's id, which stays the same however
  often the dead letters are listed or partly requeued.

Both are ``magic + 4-byte big-endian header length + JSON header + payload``.
A queued payload that starts with ``b"\\x00NC"`` is reserved for them (the
jobs notifycore queues are JSON objects and start with ``{``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["DeadEnvelope", "open_dead", "open_job", "seal_dead", "seal_job"]

JOB_MAGIC = b"\x00NCJ1"
DEAD_MAGIC = b"\x00NCD1"
_MAGIC_LENGTH = len(JOB_MAGIC)
_HEAD = _MAGIC_LENGTH + 4


def _seal(magic: bytes, header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return magic + len(head).to_bytes(4, "big") + head + payload


def _open(magic: bytes, data: bytes) -> tuple[dict[str, Any], bytes] | None:
    """The header and payload of an envelope with ``magic``; None when ``data`` is not one."""
    if data[:_MAGIC_LENGTH] != magic or len(data) < _HEAD:
        return None
    size = int.from_bytes(data[_MAGIC_LENGTH:_HEAD], "big")
    try:
        header = json.loads(data[_HEAD : _HEAD + size])
    except ValueError:
        return None
    if not isinstance(header, dict) or len(data) < _HEAD + size:
        return None
    return header, data[_HEAD + size :]


def seal_job(payload: bytes, *, attempts: int, error: str | None) -> bytes:
    """``payload`` with the tries it had so far and its last error."""
    header: dict[str, Any] = {"a": attempts}
    if error is not None:
        header["e"] = error
    return _seal(JOB_MAGIC, header, payload)


def open_job(data: bytes) -> tuple[bytes, int, str | None]:
    """The payload, the tries it carries (0 for a plain payload) and its last error."""
    if data[:1] != b"\x00":  # every job notifycore queues: no envelope, nothing to do
        return data, 0, None
    opened = _open(JOB_MAGIC, data)
    if opened is None:
        return data, 0, None
    header, payload = opened
    attempts = header.get("a", 0)
    error = header.get("e")
    return (
        payload,
        attempts if isinstance(attempts, int) and attempts > 0 else 0,
        error if isinstance(error, str) else None,
    )


@dataclass(frozen=True, slots=True)
class DeadEnvelope:
    """What a dead-letter envelope holds."""

    id: str
    payload: bytes
    attempts: int
    error: str
    failed_at: float


def seal_dead(letter: DeadEnvelope) -> bytes:
    header = {"id": letter.id, "a": letter.attempts, "e": letter.error, "t": letter.failed_at}
    return _seal(DEAD_MAGIC, header, letter.payload)


def open_dead(data: bytes) -> DeadEnvelope | None:
    """The dead letter in ``data``; None when it is not a dead-letter envelope."""
    opened = _open(DEAD_MAGIC, data)
    if opened is None:
        return None
    header, payload = opened
    letter_id, attempts, error, failed_at = (header.get(k) for k in ("id", "a", "e", "t"))
    if not (
        isinstance(letter_id, str)
        and isinstance(attempts, int)
        and isinstance(error, str)
        and isinstance(failed_at, (int, float))
    ):
        return None
    return DeadEnvelope(letter_id, payload, attempts, error, float(failed_at))
