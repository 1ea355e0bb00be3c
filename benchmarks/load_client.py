"""K streaming clients in one process, for the web benchmarks (``python -m benchmarks.load_client``).

Run by :mod:`benchmarks.webload`, never imported by a server: the clients
live in their own process so that the server's CPU and the clients' are
measured apart. One argument, a JSON object::

    {"kind": "sse" | "ws", "port": 8000, "path": "/stream", "clients": 1000,
     "subscribe": "{...}"}   # ws: the text message sent once connected

SSE clients are raw asyncio protocols (one request line, then the bytes
scanned as they come); WebSocket clients use the ``websockets`` library
(it answers the server's pings). Every event the benchmark sends carries
``#EV#<i>#<send time>#`` in its title: a client only looks for that
marker, so parsing costs the clients little and never depends on a
server's JSON layout. Warm-up events have ``i < 0``.

Lines on stdout (JSON): ``{"connected": n, "failed": m}`` once every
client has its response headers (or failed); ``{"warm": true}`` once every
client has received a warm-up event. Commands on stdin: ``expect N
TIMEOUT`` (say ``{"expecting": N}`` at once, then report once every client has received events 0..N-1, or after
TIMEOUT seconds, or on ``stop``: ``{"received", "expected", "p50", "p99", "max",
"first", "last", "cpu"}``, times in seconds), ``stop`` (the publisher failed: report
what came now), ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import statistics
import sys
import time
from typing import Any

MARKER = b"#EV#"
_MARKERS = re.compile(rb"#EV#(-?\d+)#([\d.]+)#")
CONNECT_CONCURRENCY = 100


def marker(i: int, sent: float) -> str:
    """The title of benchmark event ``i`` sent at ``sent`` (``time.time()``)."""
    return f"#EV#{i}#{sent:.6f}#"


class Tally:
    """What every client of this process received."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.warm_clients = 0
        self.warm = asyncio.Event()
        self.expected = 0  # events 0..expected-1 per client
        self.received = 0
        self.latencies: list[float] = []
        self.first = 0.0
        self.last = 0.0
        self.complete = asyncio.Event()
        self.stopped = asyncio.Event()

    def events(self, client: Client, found: list[tuple[bytes, bytes]], now: float) -> None:
        """Events received at ``now``: (number, send time) pairs, as bytes."""
        expected = self.expected
        timed = [now - float(sent) for i, sent in found if 0 <= int(i) < expected]
        if (
            len(timed) < len(found)
            and not client.warm
            and any(i.startswith(b"-") for i, _ in found)
        ):
            client.warm = True
            self.warm_clients += 1
            if self.warm_clients == self.clients:
                self.warm.set()
        if not timed:
            return
        self.latencies.extend(timed)
        self.received += len(timed)
        if self.first == 0.0:
            self.first = now
        self.last = now
        if self.received == self.expected * self.clients:
            self.complete.set()


class Client:
    warm = False

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.tail = b""

    def scan(self, data: bytes, now: float) -> None:
        """Find every complete marker in ``data`` (after what an earlier call left over)."""
        buf = self.tail + data if self.tail else data
        found = _MARKERS.findall(buf)
        # A marker cut short at the end waits for the rest (it starts after the last one found).
        cut = buf.rfind(MARKER)
        self.tail = buf[cut:] if cut >= 0 and not _MARKERS.match(buf, cut) else buf[-3:]
        if found:
            self.tally.events(self, found, now)


class SSEClient(Client, asyncio.Protocol):
    def __init__(self, tally: Tally, request: bytes, ready: asyncio.Future[bool]) -> None:
        super().__init__(tally)
        self.request = request
        self.ready = ready
        self.head = b""
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.streaming:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            ok = self.head.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"200"]
            if not self.ready.done():
                self.ready.set_result(ok)
            self.streaming = True
            data, self.head = self.head[end + 4 :], b""
        self.scan(data, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(False)


async def _sse(tally: Tally, port: int, path: str) -> Any:
    loop = asyncio.get_running_loop()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    ready: asyncio.Future[bool] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: SSEClient(tally, request, ready), "127.0.0.1", port
    )
    if not await asyncio.wait_for(ready, 120):
        transport.close()
        raise ConnectionError("no 200 answer")
    return transport


async def _ws(tally: Tally, port: int, path: str, subscribe: str) -> Any:
    from websockets.asyncio.client import connect

    websocket = await connect(
        f"ws://127.0.0.1:{port}{path}", open_timeout=120, compression=None, max_queue=None
    )
    await websocket.send(subscribe)
    client = Client(tally)

    async def read() -> None:
        async for message in websocket:
            data = message.encode() if isinstance(message, str) else message
            client.scan(data, time.time())

    reader = asyncio.get_running_loop().create_task(read())
    return websocket, reader


async def main(config: dict[str, Any]) -> None:
    tally = Tally(config["clients"])
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> Any:
        async with gate:
            if config["kind"] == "ws":
                return await _ws(tally, config["port"], config["path"], config["subscribe"])
            return await _sse(tally, config["port"], config["path"])

    opened = await asyncio.gather(*(one() for _ in range(tally.clients)), return_exceptions=True)
    failed = sum(isinstance(o, BaseException) for o in opened)
    _say({"connected": tally.clients - failed, "failed": failed})
    if failed:
        # A client that failed can never be warm: say what went wrong and wait to be told to go.
        _say({"error": repr(next(o for o in opened if isinstance(o, BaseException)))})
    commands: asyncio.Queue[str] = asyncio.Queue()
    pending = b""

    def readable() -> None:
        nonlocal pending
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            loop.remove_reader(sys.stdin.fileno())
            commands.put_nowait("quit")
            return
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if line.strip() == b"stop":  # read while an expect waits: it ends that wait
                tally.stopped.set()
            else:
                commands.put_nowait(line.decode())

    loop.add_reader(sys.stdin.fileno(), readable)
    warm = loop.create_task(tally.warm.wait())
    warm.add_done_callback(lambda _: _say({"warm": True}))
    while True:
        line = (await commands.get()).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "expect":
            await _expect(tally, int(line[1]), float(line[2]))
    loop.remove_reader(sys.stdin.fileno())
    warm.cancel()
    for o in opened:
        if isinstance(o, tuple):
            o[1].cancel()
            await o[0].close()
        elif not isinstance(o, BaseException):
            o.abort()


async def _expect(tally: Tally, count: int, timeout: float) -> None:
    tally.latencies = []
    tally.received = 0
    tally.first = tally.last = 0.0
    tally.complete.clear()
    tally.stopped.clear()
    started = _cpu()
    tally.expected = count
    _say({"expecting": count})
    ends = [
        asyncio.ensure_future(tally.complete.wait()),
        asyncio.ensure_future(tally.stopped.wait()),
    ]
    await asyncio.wait(ends, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for end in ends:
        end.cancel()
    used = _cpu() - started
    values = tally.latencies
    quantiles = statistics.quantiles(values, n=100) if len(values) >= 2 else [0.0] * 99
    _say(
        {
            "received": tally.received,
            "expected": count * tally.clients,
            "p50": quantiles[49],
            "p99": quantiles[98],
            "max": max(values, default=0.0),
            "first": tally.first,
            "last": tally.last,
            "cpu": used,
        }
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _say(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
