"""Many web nodes on one broker: uvicorn (Starlette) and gunicorn (Flask), real processes.

Two nodes on different ports share one backend (a real redis-server, and the
SQLite file that processes of one host share). An event sent through either
node reaches the clients of both, in the order it was sent; a client moved
from one node to the other and back mid-stream, resuming with ``Last-Event-ID``,
misses nothing and receives nothing twice.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from notify_redis.testing import RedisServer
from notifycore.testing import free_port, wait_for

WAIT = 60.0  # the bound of every wait, never a pass/fail threshold
APPS = Path(__file__).parent / "apps"
STREAM = "/n/alerts/stream"
#: The two kinds of node: the command that serves web_node's app on a port.
NODES = {
    "uvicorn": lambda port: [
        *(sys.executable, "-m", "uvicorn", "--app-dir", str(APPS), "web_node:starlette_app"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        *("--timeout-graceful-shutdown", "5"),
    ],
    "gunicorn": lambda port: [
        *(sys.executable, "-m", "gunicorn", "--chdir", str(APPS), "web_node:flask_app"),
        *("--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--threads", "16"),
        *("--workers", "1", "--graceful-timeout", "5"),
    ],
}


def responds(base: str) -> bool:
    try:
        return httpx.get(base + "/n/alerts/events", timeout=WAIT).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def node(kind: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """A web node in its own process; yields its base URL once it answers."""
    port = free_port()
    with (
        log.open("wb") as output,
        subprocess.Popen(NODES[kind](port), env=env, stdout=output, stderr=output) as process,
    ):
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: process.poll() is not None or responds(base), WAIT, f"{kind} to start")
            assert process.poll() is None, f"{kind} exited: {log.read_text()}"
            yield base
        finally:
            process.kill()
            process.wait(WAIT)


class Client:
    """A browser's EventSource on one node: a thread collects the frames it receives."""

    def __init__(self, base: str, last_event_id: str | None = None) -> None:
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        self.http = httpx.Client(base_url=base, timeout=WAIT, headers=headers)
        self.events: list[dict[str, Any]] = []
        self.failure: BaseException | None = None
        self.opened = threading.Event()
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        wait_for(self.opened.is_set, WAIT, f"a stream on {base}")
        assert self.failure is None, self.failure

    def _read(self) -> None:
        try:
            with self.http.stream("GET", STREAM) as response:
                assert response.status_code == 200, response.read()
                self.opened.set()
                frame: dict[str, str] = {}
                for line in response.iter_lines():  # a heartbeat at least every second
                    if self.closing.is_set():
                        break
                    if line == "" and "data" in frame:
                        self.events.append({"id": frame["id"], **json.loads(frame["data"])})
                    if line == "":
                        frame = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(": ")
                        frame[name] = value
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.failure = exc
        finally:
            self.opened.set()

    def titles(self) -> list[str]:
        return [event["title"] for event in self.events]

    def close(self) -> None:
        """Leave the stream, as a browser does: what was not read by now was never received."""
        self.closing.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the stream's reader stopped"
        self.http.close()


@pytest.fixture(params=["redis", "sqlite"])
def environment(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> dict[str, str]:
    """What every node of one test shares: the backend, its URL, a fresh key prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")}
    if request.param == "redis":
        env.update(
            NOTIFYCORE_BACKEND="redis",
            NOTIFYCORE_REDIS_URL=redis_server.url,
            NOTIFYCORE_REDIS_PREFIX=f"nodes-{uuid.uuid4().hex[:8]}:",
        )
    else:
        env.update(
            NOTIFYCORE_BACKEND="sqlite", NOTIFYCORE_BACKEND_URL=f"sqlite:///{tmp_path / 'n.db'}"
        )
    return env


def test_events_reach_every_node_and_a_moved_client_resumes_exactly(
    environment: dict[str, str], tmp_path: Path
) -> None:
    with ExitStack() as stack:
        nodes = [
            stack.enter_context(node(kind, environment, tmp_path / f"{kind}.log")) for kind in NODES
        ]
        senders = [stack.enter_context(httpx.Client(base_url=b, timeout=WAIT)) for b in nodes]
        staying = [Client(base) for base in nodes]
        for client in staying:
            stack.callback(client.close)
        moving = Client(nodes[0])
        stack.callback(moving.close)

        sent: list[str] = []
        stop = threading.Event()
        failures: list[BaseException] = []

        def send_until_stopped() -> None:
            # Each event through the next node in turn, one after the other: the stream's order.
            try:
                for number, http in zip(range(2000), itertools.cycle(senders)):
                    if stop.is_set():
                        break
                    title = f"e{number}"
                    answer = http.post("/n/events", json={"event_type": "test", "title": title})
                    assert answer.status_code == 202, answer.text
                    sent.append(title)
            except BaseException as exc:
                failures.append(exc)

        sender = threading.Thread(target=send_until_stopped, daemon=True)
        sender.start()
        stack.callback(sender.join, WAIT)
        stack.callback(stop.set)

        # Mid-stream, the moving client leaves the uvicorn node for the gunicorn one and
        # comes back, each time resuming from the last event it received.
        def twenty_events(client: Client) -> bool:
            return len(client.events) >= 20 or bool(failures)

        def more_sent(than: int) -> bool:
            return len(sent) >= than + 10 or bool(failures)

        received: list[dict[str, Any]] = []
        for base in [nodes[1], nodes[0]]:
            wait_for(functools.partial(twenty_events, moving), WAIT, "20 events")
            moving.close()
            assert not failures, failures
            received += moving.events
            moving = Client(base, last_event_id=received[-1]["id"])
            stack.callback(moving.close)
            # The events go on while it joins: its replay meets the live ones.
            wait_for(functools.partial(more_sent, len(sent)), WAIT, "more events sent")
        wait_for(functools.partial(twenty_events, moving), WAIT, "20 events")
        stop.set()
        sender.join(WAIT)
        assert not failures, failures

        def ended(client: Client) -> bool:  # events come in order: the last one comes last
            return bool(client.events) and client.events[-1]["title"] == sent[-1]

        wait_for(lambda: all(map(ended, [*staying, moving])), WAIT, "the last event everywhere")
        for client in [*staying, moving]:
            assert client.failure is None, client.failure
        assert staying[0].titles() == sent, "the uvicorn node's client got every event, in order"
        assert staying[1].titles() == sent, "the gunicorn node's client got every event, in order"
        received += moving.events
        assert received == staying[0].events, "the moved client: nothing missed, nothing twice"
