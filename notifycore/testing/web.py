"""Hostile resume ids for testing web adapters: every one must be a 400, never a 500.

The checks take small callables, so they run through any adapter's test
client, or real HTTP, without this module importing a web framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["BAD_STREAM_IDS", "check_resume_ids", "check_websocket_resume_ids"]

#: Ids no backend ever gives: a ``Last-Event-ID``, ``lastEventId``, ``since`` or WebSocket
#: ``after`` holding one is refused as ``bad_request`` on every backend.
BAD_STREAM_IDS: tuple[str, ...] = (
    "9" * 5000,  # far past any id's length (and Python's int() digit limit)
    "9" * 40,  # within the length bound, past 64 bits
    str(2**63),  # one past SQLite's integers and RabbitMQ's offsets
    str(2**64),  # one past Redis's
    "١٢٣",  # Arabic-Indic digits, which int() accepts
    "²",  # a digit to str.isdigit(), not to int()
    "1-²",
    "1-",
    "-1",
    "1-2-3",
    "0x10",
    "1e3",
    "1.5",
    "x",
    "1\x00",
)

Get = Callable[[str, Mapping[str, str], Mapping[str, str]], tuple[int, Any]]


def _is_bad_request(status: int, body: Any) -> bool:
    return status == 400 and isinstance(body, dict) and body.get("error") == "bad_request"


def _header_safe(value: str) -> bool:
    """True for a value an HTTP header can carry (printable Latin-1)."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return value.isprintable()


def check_resume_ids(get: Get, stream_path: str, history_path: str) -> None:
    """Assert each of :data:`BAD_STREAM_IDS` is a 400 ``bad_request`` wherever a client gives an id.

    ``get(path, query, headers) -> (status, parsed JSON body or None)``
    requests ``path`` on the app. The ids go as ``Last-Event-ID`` (those a
    header can carry) and ``?lastEventId=`` to ``stream_path``, and as
    ``?since=`` to ``history_path``.
    """
    wrong: list[str] = []
    for bad in BAD_STREAM_IDS:
        cases: list[tuple[str, dict[str, str], dict[str, str]]] = [
            (stream_path, {"lastEventId": bad}, {}),
            (history_path, {"since": bad}, {}),
        ]
        if _header_safe(bad):
            cases.append((stream_path, {}, {"Last-Event-ID": bad}))
        for path, query, headers in cases:
            status, body = get(path, query, headers)
            if not _is_bad_request(status, body):
                where = ", ".join(f"{k}={v[:12]!r}" for k, v in {**query, **headers}.items())
                wrong.append(f"{path} with {where}: {status} {str(body)[:200]}")
    assert not wrong, "malformed ids not refused with 400 bad_request:\n" + "\n".join(wrong)


def check_websocket_resume_ids(
    send: Callable[[dict[str, Any]], None], receive: Callable[[], dict[str, Any]], stream: str
) -> None:
    """Assert each bad ``after`` gets an error message and the session goes on.

    ``send`` and ``receive`` exchange JSON messages on one open WebSocket.
    """
    wrong: list[str] = []
    for bad in BAD_STREAM_IDS:
        send({"action": "subscribe", "stream": stream, "after": bad})
        answer = receive()
        if answer.get("type") != "error" or answer.get("error") != "bad_request":
            wrong.append(f"after={bad[:12]!r}: {str(answer)[:200]}")
    send({"action": "subscribe", "stream": stream})
    answer = receive()
    assert not wrong, "malformed ids not refused with bad_request:\n" + "\n".join(wrong)
    assert answer.get("type") == "subscribed", f"the session did not go on: {answer}"
