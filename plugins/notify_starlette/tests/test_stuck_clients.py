"""Clients that never read are dropped, and uvicorn still shuts down within its grace period;
clients that leave halfway through their request's body are let go quietly.

uvicorn runs in its own process; the clients are raw sockets with a tiny
receive buffer that send their request (an SSE stream, a WebSocket
subscription) and read nothing. A graceful close would wait for them forever.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from notifycore import Notifications
from notifycore.testing import cut_short, free_port, leave_halfway, wait_for

WAIT = 60.0  # the bound of every wait, never a pass/fail threshold
APPS = Path(__file__).parent / "apps"
STREAM = "event-hub-alerts"


@dataclass
class Uvicorn:
    base: str
    process: subprocess.Popen[str]
    log: Path

    def debug(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(self.base + "/debug", timeout=WAIT).json()
        return found


@contextmanager
def uvicorn(
    database: str, log: Path, send_timeout: float = 2, log_level: str = "info"
) -> Iterator[Uvicorn]:
    """uvicorn serving ``stuck_app`` in its own process, its output in ``log``; at
    ``log_level="trace"`` it logs the end of each request's ASGI call (``ASGI [n] Completed``,
    or ``Raised exception``)."""
    port = free_port()
    env = {**os.environ, "STUCK_DB": database, "SEND_TIMEOUT": str(send_timeout)}
    command = [
        *(sys.executable, "-m", "uvicorn", "stuck_app:app", "--app-dir", str(APPS)),
        *("--host", "127.0.0.1", "--port", str(port), "--ws", "websockets-sansio"),
        *("--timeout-graceful-shutdown", str(int(WAIT)), "--log-level", log_level),
    ]
    with (
        log.open("w") as output,
        subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        served = Uvicorn(f"http://127.0.0.1:{port}", process, log)
        try:
            # "Application startup complete" comes before uvicorn binds its port: this after.
            wait_for(lambda: "Uvicorn running on" in log.read_text(), WAIT, "uvicorn")
            yield served
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(WAIT)


def never_reading(base: str, request: bytes) -> socket.socket:
    """A connection that sends ``request`` and then reads nothing: a tiny receive buffer."""
    host, port = base.removeprefix("http://").split(":")
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(WAIT)
    client.connect((host, int(port)))
    client.sendall(request)
    return client


def sse_request(host: str) -> bytes:
    return f"GET /n/alerts/stream HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def websocket_subscription(client: socket.socket, host: str) -> None:
    """Open a WebSocket and subscribe to the hub, reading only the handshake's answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    client.sendall(
        f"GET /n/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += client.recv(1)  # byte by byte: nothing past the handshake is read
    assert answer.startswith(b"HTTP/1.1 101"), answer
    payload = json.dumps({"action": "subscribe", "stream": "alerts"}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    client.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)


def flood(database: str, count: int = 120) -> None:
    """Publish more than any socket buffer holds (about 8 MB)."""
    publisher = Notifications(config={"BACKEND": "sqlite", "BACKEND_URL": database}, environ={})
    data = json.dumps({"event_type": "alert", "title": "x" * 64_000}).encode()
    publisher.backend.publish_many(STREAM, [data] * count)
    publisher.close()


def stop(server: Uvicorn) -> str:
    """SIGTERM; the process must exit by itself (WAIT bounds the wait); its log."""
    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: server.process.poll() is not None, WAIT * 2, "uvicorn to exit")
    return server.log.read_text()


def assert_clean_shutdown(log: str) -> None:
    assert "timeout graceful shutdown exceeded" not in log, log[-2000:]
    assert "Finished server process" in log, log[-2000:]
    assert "Traceback" not in log and "ASGI callable returned" not in log, log[-4000:]


def test_stuck_clients_are_dropped_while_the_server_runs(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'stuck.db'}"
    with uvicorn(database, tmp_path / "uvicorn.log") as server:
        host = server.base.removeprefix("http://")
        sse = never_reading(server.base, sse_request(host))
        ws = never_reading(server.base, b"")
        try:
            websocket_subscription(ws, host)
            wait_for(lambda: server.debug()["streams"] == [STREAM], WAIT, "the streams to open")
            flood(database)
            wait_for(lambda: server.debug()["streams"] == [], WAIT, "the stuck clients to go")
            # Still reading nothing: their connections were aborted, or a graceful close
            # waiting for them to read would hold the shutdown.
            assert_clean_shutdown(stop(server))
        finally:
            sse.close()
            ws.close()


def test_shutdown_finishes_with_stuck_clients_still_connected(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'stuck.db'}"
    with uvicorn(database, tmp_path / "uvicorn.log") as server:
        host = server.base.removeprefix("http://")
        sse = never_reading(server.base, sse_request(host))
        ws = never_reading(server.base, b"")
        try:
            websocket_subscription(ws, host)
            wait_for(lambda: server.debug()["streams"] == [STREAM], WAIT, "the streams to open")
            flood(database)
            # SIGTERM at once: the streams end while their clients' buffers are full.
            assert_clean_shutdown(stop(server))
        finally:
            sse.close()
            ws.close()


def test_a_stuck_websocket_client_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """The writer shared by the loop's connections never waits on one whose buffer is full.

    Its writes would be bounded only by ``send_timeout``, here far beyond every
    wait of this test: the reading client gets the whole flood meanwhile.
    """
    database = f"sqlite:///{tmp_path / 'stuck.db'}"
    with uvicorn(database, tmp_path / "uvicorn.log", send_timeout=10 * WAIT) as server:
        host = server.base.removeprefix("http://")
        stuck = never_reading(server.base, b"")
        try:
            websocket_subscription(stuck, host)
            wait_for(lambda: server.debug()["streams"] == [STREAM], WAIT, "the stream to open")
            url = server.base.replace("http://", "ws://") + "/n/ws"
            with connect(url, open_timeout=WAIT, max_size=None) as reader:
                reader.send(json.dumps({"action": "subscribe", "stream": "alerts"}))
                assert json.loads(reader.recv(timeout=WAIT))["type"] == "subscribed"
                flood(database)
                received = 0
                while received < 120:  # each recv is bounded by WAIT, far below send_timeout
                    message = json.loads(reader.recv(timeout=WAIT))
                    assert message["type"] == "event", message
                    received += 1
        finally:
            stuck.close()


#: The routes that read a body, with the complete JSON object each is sent here.
BODY_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/n/events", {"event_type": "alert", "title": "partial"}),
    ("POST", "/n/me/inbox/read", {"ids": ["x"]}),
    ("POST", "/n/me/inbox/archive", {"ids": ["x"]}),
    ("PUT", "/n/me/preferences", {"preferences": {}}),
]


def titles(database: str) -> list[str]:
    """The titles of the events published on the hub's stream."""
    reader = Notifications(config={"BACKEND": "sqlite", "BACKEND_URL": database}, environ={})
    try:
        return [json.loads(m.data)["title"] for m in reader.backend.read(STREAM).messages]
    finally:
        reader.close()


def test_a_client_leaving_halfway_through_its_body_is_let_go_quietly(tmp_path: Path) -> None:
    """No error in the log, no answer, nothing sent from the part of the body that came;
    the server goes on serving."""
    database = f"sqlite:///{tmp_path / 'stuck.db'}"
    log = tmp_path / "uvicorn.log"
    with uvicorn(database, log, log_level="trace") as server:
        requests = [r for route in BODY_ROUTES for r in cut_short(*route)]
        for request in requests:
            leave_halfway(server.base, request)
        ended = re.compile(r"ASGI \[\d+\] (Completed|Raised exception)")
        wait_for(
            lambda: len(ended.findall(log.read_text())) == len(requests),
            WAIT,
            "every request's ASGI call to end",
        )
        # Nothing failed, nothing answered them (in this trace, each message sent is logged).
        ended_log = log.read_text()
        assert "Exception in ASGI application" not in ended_log, ended_log[-4000:]
        assert "Raised exception" not in ended_log, ended_log[-4000:]
        assert "http.response.start" not in ended_log, "a client that left got an answer"
        whole = {"event_type": "alert", "title": "whole"}
        answer = httpx.post(server.base + "/n/events", json=whole, timeout=WAIT)
        assert answer.status_code == 202, answer.text
        assert titles(database) == ["whole"]
        text = stop(server)
        assert "ERROR" not in text, text[-4000:]
        assert_clean_shutdown(text)
