"""10,000 idle connections on one uvicorn process: memory per connection, one broadcast to all.

One uvicorn process (the default protocols: h11, and the ``websockets``
library for WebSocket) serves 10,000 concurrent connections, opened by
clients spread over four processes of :mod:`benchmarks.load_client`
(``ulimit -n`` is 20,000 per process). SSE: the notify-starlette stream of
one hub beside the bare sse-starlette app of :mod:`benchmarks.bench_web`.
WebSocket: the notify-starlette ``/ws`` endpoint, each client subscribed to
the hub, beside a bare Starlette WebSocket app keeping a set of sockets and
sending each event's JSON to each in turn. Each side gets a fresh server:
its resident memory (``VmRSS``) is read once it has answered one event and
again once every client is connected and has received a warm-up event; the
difference divided by the connections is the memory per connection (the
aim is 30 KB or less, Centrifugo's figure). Then one event at a time,
several times: the time from its send to its receipt by the last of the
10,000 clients, the median reported. The connections are idle between
events; heartbeats are the adapters' defaults. On 2 cores the server has
one, the four client processes share the other.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from benchmarks import bench_web, webload
from benchmarks.common import Measurement
from benchmarks.webload import Clients, Publisher, Server

LIMIT = (
    "one uvicorn process (one core) holding every connection: memory is the per-connection "
    "Python objects (task, subscription, send guard) and the kernel's socket buffers; the "
    "time to all is one event written to 10,000 sockets by one event loop, the client "
    "processes reading on the other core"
)
NAME = "10,000 idle connections on one uvicorn process (SSE and WebSocket)"

BARE_WS_APP = """
import json
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

sockets = set()

async def socket(websocket):
    await websocket.accept()
    await websocket.receive_text()  # the subscription
    sockets.add(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        sockets.discard(websocket)

async def publish(request):
    event = await request.json()
    # Encoded once per event, whatever the number of clients.
    text = json.dumps({"type": "event", "stream": "bench", "event": event})
    for websocket in list(sockets):
        await websocket.send_text(text)
    return JSONResponse({"clients": len(sockets)}, status_code=202)

app = Starlette(routes=[WebSocketRoute("/ws", socket), Route("/publish", publish, methods=["POST"])])
"""

SUBSCRIBE = '{"action": "subscribe", "stream": "Bench"}'
CLIENT_PROCESSES = 4
AIM_BYTES = 30 * 1024


@dataclass(frozen=True)
class Kind:
    """One protocol's two sides: (app source, stream path, publish path) each."""

    label: str
    kind: str
    ours: tuple[str, str, str]
    bare: tuple[str, str, str]
    bare_name: str


KINDS = (
    Kind(
        "SSE",
        "sse",
        (
            bench_web.NOTIFYCORE_APP,
            "/notifications/event-hub-Bench/stream",
            "/notifications/events",
        ),
        (bench_web.BARE_APP, "/stream", "/publish"),
        "bare sse-starlette, a queue per client",
    ),
    Kind(
        "WebSocket",
        "ws",
        (bench_web.NOTIFYCORE_APP, "/notifications/ws", "/notifications/events"),
        (BARE_WS_APP, "/ws", "/publish"),
        "bare Starlette WebSocket, a set of sockets",
    ),
)


@dataclass(frozen=True)
class Result:
    per_connection: float  # bytes
    to_all: float  # seconds, median over the broadcasts
    connect: float  # seconds to open every connection


def _open(server: Server, kind: str, path: str, connections: int, processes: int) -> list[Clients]:
    shares = [connections // processes + (n < connections % processes) for n in range(processes)]
    subscribe = SUBSCRIBE if kind == "ws" else ""

    def one(share: int) -> Clients:
        return Clients(server.port, path, share, kind=kind, subscribe=subscribe, timeout=600)

    with ThreadPoolExecutor(processes) as pool:
        futures = [pool.submit(one, share) for share in shares]
    groups: list[Clients] = []
    errors: list[BaseException] = []
    for future in futures:
        error = future.exception()
        if error is None:
            groups.append(future.result())
        else:
            errors.append(error)
    if errors:
        for group in groups:
            group.close()
        raise errors[0]
    return groups


def _warm_up(groups: list[Clients], publisher: Publisher, timeout: float = 300.0) -> None:
    """Warm-up events until every client of every process has received one."""
    deadline = time.monotonic() + timeout
    waiting = list(groups)
    n = 0
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError("the clients were not all warm")
        n += 1
        publisher.publish(-n)
        time.sleep(0.25)
        waiting = [group for group in waiting if not group.poll("warm")]
    time.sleep(1.0)  # let the last warm-up events reach every client before measuring


def measure(
    server: Server,
    kind: str,
    stream_path: str,
    publish_path: str,
    connections: int,
    broadcasts: int,
    processes: int = CLIENT_PROCESSES,
) -> Result:
    publisher = Publisher(server.port, publish_path)
    try:
        publisher.publish(-1)  # the server has answered one event: its code is loaded
        before = server.rss()
        started = time.monotonic()
        groups = _open(server, kind, stream_path, connections, processes)
        connect = time.monotonic() - started
        try:
            _warm_up(groups, publisher)
            per_connection = (server.rss() - before) / connections
            times = []
            for _ in range(broadcasts):
                for group in groups:
                    group.command("expect 1 300")
                for group in groups:
                    group.wait("expecting", 60)
                sent = publisher.publish(0)
                reports = [group.wait("received", 400) for group in groups]
                received = sum(report["received"] for report in reports)
                if received != connections:
                    raise RuntimeError(f"{received} of {connections} clients received the event")
                times.append(max(report["last"] for report in reports) - sent)
        finally:
            for group in groups:
                group.close()
    finally:
        publisher.close()
    return Result(per_connection, statistics.median(times), connect)


def _side(
    directory: str, module: str, app: tuple[str, str, str], kind: str, count: int, broadcasts: int
) -> Result:
    env = {"NOTIFYCORE_LOAD_PLUGINS": "starlette"}
    server = webload.serve(directory, module, app[0], webload.uvicorn_command(), env=env)
    try:
        return measure(server, kind, app[1], app[2], count, broadcasts)
    finally:
        server.stop()


def run(quick: bool = False, verbose: bool = False) -> list[Measurement]:
    connections = 1_000 if quick else 10_000
    broadcasts = 2 if quick else 5
    progress = webload.progress_printer(verbose)
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory() as directory:
        for kind in KINDS:
            ours = _side(
                directory, f"conn_nc_{kind.kind}", kind.ours, kind.kind, connections, broadcasts
            )
            bare = _side(
                directory, f"conn_bare_{kind.kind}", kind.bare, kind.kind, connections, broadcasts
            )
            if progress is not None:
                progress(f"{kind.label}: notifycore {ours}, bare {bare}")
            title = f"{kind.label}, {connections:,} idle connections"
            results += [
                Measurement(
                    f"{title}: server memory per connection",
                    ours.per_connection / 1024,
                    kind.bare_name,
                    bare.per_connection / 1024,
                    "KB",
                    note=(
                        f"lower is better; aim ≤ {AIM_BYTES // 1024} KB (Centrifugo's figure); "
                        "VmRSS growth over the connections"
                    ),
                    limit=LIMIT,
                ),
                Measurement(
                    f"{title}: one event to all",
                    ours.to_all * 1000,
                    kind.bare_name,
                    bare.to_all * 1000,
                    "ms",
                    note=(
                        f"lower is better; send to the last receipt, median of {broadcasts}; "
                        f"connecting took {ours.connect:.0f} s / {bare.connect:.0f} s; "
                        f"2 cores: the server has one, {CLIENT_PROCESSES} client processes "
                        "share the other"
                    ),
                    limit=LIMIT,
                ),
            ]
    return results


if __name__ == "__main__":  # python -m benchmarks.bench_connections [--quick]
    from benchmarks.report import table

    print(table(run(quick="--quick" in sys.argv, verbose=True)))
