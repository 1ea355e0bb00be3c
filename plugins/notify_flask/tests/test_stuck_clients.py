"""A client that never reads is dropped after one write's send_timeout: it pins no server thread.
A client that leaves halfway through its request's body is let go without an error.

Real servers in their own process — werkzeug's threaded server and gunicorn's
gthread worker; the client is a raw socket with a tiny receive buffer that
sends its request and reads nothing.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from notify_flask.testing import read_events
from notifycore import Notifications
from notifycore.testing import cut_short, free_port, leave_halfway, wait_for

WAIT = 60.0  # the bound of every wait, never a pass/fail threshold
APPS = Path(__file__).parent / "apps"
STREAM = "event-hub-alerts"
#: gthread with two threads: the stuck stream's, and one for everything else.
SERVERS = {
    "werkzeug": lambda port: [sys.executable, str(APPS / "stuck_server.py"), str(port)],
    "gunicorn": lambda port: [
        *(sys.executable, "-m", "gunicorn", "--chdir", str(APPS), "stuck_server:app"),
        *("--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--threads", "2"),
        *("--workers", "1", "--graceful-timeout", "5", "--access-logfile", "-"),
    ],
}


def responds(base: str) -> bool:
    try:
        return httpx.get(base + "/debug", timeout=WAIT).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def server(kind: str, database: str, log: Path | None = None) -> Iterator[str]:
    """``kind`` serving ``stuck_server`` in its own process; its output (each request's
    access line among it) in ``log`` if given."""
    port = free_port()
    env = {**os.environ, "STUCK_DB": database, "SEND_TIMEOUT": "1"}
    with (
        open(os.devnull if log is None else log, "w") as output,
        subprocess.Popen(
            SERVERS[kind](port), env=env, stdout=output, stderr=subprocess.STDOUT
        ) as process,
    ):
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: process.poll() is not None or responds(base), WAIT, kind)
            assert process.poll() is None, f"{kind} exited"
            yield base
        finally:
            process.kill()
            process.wait(WAIT)


def never_reading(base: str, path: str) -> socket.socket:
    """A connection that asks for ``path`` and then reads nothing: a tiny receive buffer."""
    host, port = base.removeprefix("http://").split(":")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(WAIT)
    client.connect((host, int(port)))
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    return client


def flood(database: str, count: int = 120) -> None:
    """Publish more than any socket buffer holds (about 8 MB)."""
    publisher = Notifications(config={"BACKEND": "sqlite", "BACKEND_URL": database}, environ={})
    data = json.dumps({"event_type": "test", "title": "x" * 64_000}).encode()
    publisher.backend.publish_many(STREAM, [data] * count)
    publisher.close()


def debug(base: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(base + "/debug", timeout=WAIT).json()
    return found


def closed_by_server(client: socket.socket) -> bool:
    """Read what is left; True once the server has closed the connection."""
    try:
        while client.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_client_that_never_reads_is_dropped_and_frees_its_thread(
    kind: str, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'stuck.db'}"
    with server(kind, database) as base:
        baseline = debug(base)["threads"]
        stuck = never_reading(base, f"/notifications/{STREAM}/stream")
        try:
            wait_for(lambda: debug(base)["streams"] == [STREAM], WAIT, "the stream to open")
            flood(database)
            # The server's write blocks once the buffers are full; send_timeout ends it.
            wait_for(lambda: debug(base)["streams"] == [], WAIT, "the stuck client to be dropped")
            if kind == "werkzeug":  # a thread per request: the stuck one has ended
                wait_for(lambda: debug(base)["threads"] <= baseline, WAIT, "its thread to end")
            assert closed_by_server(stuck)
        finally:
            stuck.close()
        # The thread serves again: a reading client's stream, and (gunicorn's second
        # thread being the stream's now) the debug route beside it.
        with (
            httpx.Client(timeout=WAIT) as http,
            http.stream("GET", f"{base}/notifications/{STREAM}/stream") as live,
        ):
            assert live.status_code == 200
            wait_for(lambda: debug(base)["streams"] == [STREAM], WAIT, "the stream to open")
            flood(database, count=1)
            assert len(read_events(live, 1)) == 1


#: The routes that read a body, with the complete JSON object each is sent here.
BODY_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/notifications/events", {"event_type": "test", "title": "partial"}),
    ("POST", "/notifications/me/inbox/read", {"ids": ["x"]}),
    ("POST", "/notifications/me/inbox/archive", {"ids": ["x"]}),
    ("PUT", "/notifications/me/preferences", {"preferences": {}}),
]


def titles(database: str) -> list[str]:
    """The titles of the events published on the hub's stream."""
    reader = Notifications(config={"BACKEND": "sqlite", "BACKEND_URL": database}, environ={})
    try:
        return [json.loads(m.data)["title"] for m in reader.backend.read(STREAM).messages]
    finally:
        reader.close()


def broken(method: str, path: str, body: dict[str, Any]) -> list[bytes]:
    """Chunked bodies broken elsewhere than :func:`cut_short` breaks them (gunicorn raises
    errors of its own for these, not an ``OSError``): the client leaves right after a chunk's
    data, or after the last chunk's size line; or a chunk's size is not hexadecimal."""
    data = json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    chunked = f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()
    return [
        chunked + b"%x\r\n" % len(data) + data,
        chunked + b"%x\r\n" % len(data) + data + b"\r\n0\r\n",
        chunked + b"zz\r\n" + data + b"\r\n0\r\n\r\n",
    ]


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_client_leaving_halfway_through_its_body_is_let_go_quietly(
    kind: str, tmp_path: Path
) -> None:
    """No error in the log, nothing sent from the part of the body that came (gunicorn hands
    an app fewer bytes than Content-Length said, then ends the body); the server goes on
    serving. (Under WSGI the app answers anyway: a 400 that nobody reads.)"""
    database = f"sqlite:///{tmp_path / 'stuck.db'}"
    log = tmp_path / "server.log"
    with server(kind, database, log) as base:
        requests = [r for route in BODY_ROUTES for r in cut_short(*route) + broken(*route)]
        for request in requests:
            leave_halfway(base, request)
        # Each answered request's access line (werkzeug may colour it).
        answered = re.compile(r'"(?:\S*?)(?:POST|PUT) /notifications/\S+ HTTP/1\.1\S*" (\d{3})')
        wait_for(
            lambda: len(answered.findall(log.read_text())) == len(requests),
            WAIT,
            "every request to be answered",
        )
        # (An app's error is logged before its answer, and its answer's access line.)
        text = log.read_text()
        assert "ERROR" not in text and "Traceback" not in text, text[-4000:]
        assert set(answered.findall(text)) == {"400"}, text[-4000:]
        whole = {"event_type": "test", "title": "whole"}
        answer = httpx.post(base + "/notifications/events", json=whole, timeout=WAIT)
        assert answer.status_code == 202, answer.text
        assert titles(database) == ["whole"]
