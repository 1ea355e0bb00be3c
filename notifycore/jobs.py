"""The queued-job format: one JSON object per (event, hub, consumer).

``{"v": 1, "hub": label, "consumer": name, "event": {...}}``. The event's
JSON is spliced in as the bytes made once at send time, not re-serialised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from notifycore.errors import InvalidEvent, InvalidJob
from notifycore.event import Event, loads_json

__all__ = ["JOB_VERSION", "JobSpec", "decode_job", "encode_job"]

JOB_VERSION = 1
_encode_str = json.JSONEncoder(ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A decoded job: which consumer of which hub gets which event."""

    hub: str
    consumer: str
    event: Event


def encode_job(hub: str, consumer: str, event_json: bytes) -> bytes:
    """The payload of a job delivering ``event_json`` to ``consumer`` of hub ``hub``."""
    head = (
        f'{{"v":{JOB_VERSION},"hub":{_encode_str(hub)},"consumer":{_encode_str(consumer)},"event":'
    )
    return head.encode() + event_json + b"}"


#: The envelope's size by (hub, consumer): a worker sees few of them, many times each.
_ENVELOPES: dict[tuple[str, str], int] = {}


def _envelope_size(hub: str, consumer: str) -> int:
    """The bytes :func:`encode_job` puts around an event for ``consumer`` of hub ``hub``."""
    size = _ENVELOPES.get((hub, consumer))
    if size is None:
        size = len(encode_job(hub, consumer, b""))
        if len(_ENVELOPES) < 4096:  # bounded: names come from payloads
            _ENVELOPES[hub, consumer] = size
    return size


#: Before parsing, a payload may be this many times the event limit (names are escaped).
_PARSE_FACTOR = 8


def decode_job(
    payload: bytes, *, max_event_size: int | None = None, max_event_depth: int | None = None
) -> JobSpec:
    """Parse and validate a job payload; :class:`InvalidJob` says what is wrong.

    The payload is bounded before it is parsed, and the event within it (the
    payload less the envelope :func:`encode_job` puts around it) after; its
    fields may nest ``max_event_depth`` levels (``None``: the ceiling every
    event respects).
    """
    if max_event_size is not None and len(payload) > _PARSE_FACTOR * max_event_size + 4096:
        raise InvalidJob(
            f"job is {len(payload)} bytes, far over the event size limit of {max_event_size}"
        )
    try:
        data: Any = loads_json(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJob(f"job is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJob("job is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidJob(f"job must be a JSON object, not {type(data).__name__}")
    if data.get("v") != JOB_VERSION:
        raise InvalidJob(f"unsupported job version {data.get('v')!r} (expected {JOB_VERSION})")
    hub, consumer, event = data.get("hub"), data.get("consumer"), data.get("event")
    if not isinstance(hub, str) or not isinstance(consumer, str):
        raise InvalidJob("job needs string 'hub' and 'consumer' keys")
    if not (hub + consumer).isascii():
        try:
            (hub + consumer).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJob("job's 'hub' or 'consumer' is not valid Unicode text") from None
    if not isinstance(event, dict):
        raise InvalidJob("job needs an 'event' object")
    if max_event_size is not None:
        size = len(payload) - _envelope_size(hub, consumer)
        if size > max_event_size:
            raise InvalidJob(f"job's event is {size} bytes, over the limit of {max_event_size}")
    try:
        parsed = Event.from_dict(event, max_depth=max_event_depth)
    except InvalidEvent as exc:
        raise InvalidJob(f"job's event is invalid: {exc}") from None
    except Exception as exc:  # whatever else the payload provokes, it can never run
        raise InvalidJob(f"job's event is invalid: {type(exc).__name__}: {exc}") from None
    return JobSpec(hub, consumer, parsed)
