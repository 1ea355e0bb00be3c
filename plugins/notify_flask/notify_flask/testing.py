"""Test helpers for apps using notify-flask: a real threaded server and an SSE reader."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from flask import Flask
from werkzeug.serving import make_server


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def lines(response: httpx.Response) -> Iterator[str]:
    """The response's lines, one iterator per response, so reads can be spread over calls."""
    found: Iterator[str] | None = getattr(response, "_notifycore_lines", None)
    if found is None:
        found = response.iter_lines()
        response._notifycore_lines = found  # type: ignore[attr-defined]
    return found


def read_events(
    response: httpx.Response, count: int, *, kinds: tuple[str, ...] = ("test", "chat", "reset")
) -> list[dict[str, Any]]:
    """Parse SSE frames until ``count`` events or the end (comments and retry hints skipped)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    data: list[str] = []
    for line in lines(response):
        if line == "":
            if "event" in current:
                current["data"] = json.loads("\n".join(data)) if data else None
                events.append(current)
                if len(events) >= count:
                    return events
            current, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(": ")
            if field == "data":
                data.append(value)
            else:
                current[field] = value
    return events
