"""A slow client is cut off without delaying a fast one; 200 concurrent clients all keep up."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from typing import Any

import httpx
from starlette_helpers import SSE, WAIT, Serve, data_of, event, make_notifications

from notifycore import hookimpl
from notifycore.web import process_state

FRAME = re.compile(rb"id: (\d+)\nevent: alert\ndata: [^\n]*\n\n")


class Metrics:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    @hookimpl
    def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
        self.seen.append((name, tags))


def read_until_end(sock: socket.socket) -> bytes:
    """A raw chunked SSE body until the server ends it (last chunk) or closes the socket."""
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    return data


def test_slow_client_is_disconnected_without_delaying_a_fast_one(
    serve: Serve, client: httpx.Client
) -> None:
    notifications = make_notifications(MAX_EVENT_SIZE=1_000_000)
    metrics = Metrics()
    notifications.plugins.register(metrics, "test-metrics")
    try:
        # A long send_timeout: the slow client can only be ended by the fan-out's policy.
        served = serve(notifications, max_pending=4, send_timeout=WAIT)
        total, payload = 200, "x" * 100_000  # 20 MB: far more than the socket buffers hold

        slow = socket.create_connection(("127.0.0.1", served.server.port), timeout=WAIT)
        slow.sendall(b"GET /n/alerts/stream HTTP/1.1\r\nHost: test\r\n\r\n")
        head = b""
        while b"retry: 3000" not in head:  # subscribed; from now on it reads nothing
            head += slow.recv(4096)

        got: list[str] = []
        changed = threading.Condition()
        ready = threading.Event()

        def fast() -> None:
            with client.stream("GET", served.base + "/alerts/stream") as response:
                sse = SSE(response)
                sse.next()
                ready.set()
                for _ in range(total):
                    frame = sse.next()
                    with changed:
                        got.append(frame["id"])
                        changed.notify_all()

        reader = threading.Thread(target=fast, daemon=True)
        reader.start()
        assert ready.wait(WAIT)
        for i in range(total):
            notifications.send(event(payload, number=i))
            # Paced by the fast client: it must get each event while the slow one reads nothing.
            with changed:

                def caught_up(i: int = i) -> bool:
                    return len(got) > i

                assert changed.wait_for(caught_up, WAIT)
        reader.join(WAIT)
        assert got == [str(i) for i in range(1, total + 1)]

        body = head + read_until_end(slow)
        slow.close()
        first = [int(i) for i in FRAME.findall(body)]
        assert first == list(range(1, len(first) + 1))
        assert len(first) < total  # cut off before the end
        assert ("streams.disconnected", {"reason": "slow", "transport": "sse"}) in metrics.seen

        # It resumes where it stopped, with neither gap nor duplicate.
        headers = {"Last-Event-ID": str(first[-1] if first else 0)}
        with client.stream("GET", served.base + "/alerts/stream", headers=headers) as response:
            sse = SSE(response)
            sse.next()
            rest = [int(f["id"]) for f in sse.events(total - len(first))]
        assert first + rest == list(range(1, total + 1))
    finally:
        notifications.plugins.unregister(metrics)
        notifications.close()


def test_two_hundred_concurrent_clients(serve: Serve) -> None:
    notifications = make_notifications()
    try:
        served = serve(notifications)
        clients, events = 200, 20
        url = served.base + "/alerts/stream"

        async def listen(
            http: httpx.AsyncClient, subscribed: asyncio.Event, counter: list[int]
        ) -> list[tuple[str, Any]]:
            frames: list[tuple[str, Any]] = []
            current: dict[str, str] = {}
            async with http.stream("GET", url) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line:
                        name, _, value = line.partition(": ")
                        current[name] = value
                        continue
                    if "retry" in current:
                        counter[0] += 1
                        if counter[0] == clients:
                            subscribed.set()
                    elif "id" in current:
                        frames.append((current["id"], data_of(current)["number"]))
                        if len(frames) == events:
                            return frames
                    current = {}
            return frames

        async def main() -> list[list[tuple[str, Any]]]:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT), limits=limits) as http:
                subscribed, counter = asyncio.Event(), [0]
                tasks = [
                    asyncio.create_task(listen(http, subscribed, counter)) for _ in range(clients)
                ]
                await asyncio.wait_for(subscribed.wait(), WAIT * 2)
                await asyncio.to_thread(
                    lambda: [notifications.send(event("e", number=n)) for n in range(events)]
                )
                return await asyncio.wait_for(asyncio.gather(*tasks), WAIT * 2)

        results = asyncio.run(main())
        expected = [(str(n + 1), n) for n in range(events)]
        assert len(results) == clients
        assert all(frames == expected for frames in results)
        # One follower for the stream; each event framed once for all 200 clients.
        assert process_state(notifications).frames(notifications.fanout.backend).made == events
    finally:
        notifications.close()
