"""Fan-out to K concurrent SSE clients on one uvicorn process, beside a bare sse-starlette app.

Each server runs in its own process on 127.0.0.1. notifycore: the
notify-starlette routes on the memory backend, a PushConsumer on one hub,
events sent with ``POST /notifications/events``. Bare: an sse-starlette
``EventSourceResponse`` per client fed by its own ``asyncio.Queue``, a
``POST /publish`` putting each event on every queue (so each client
serialises every event itself). The clients are K httpx streams in this
process; warm-up events go out until every client has received one, then
30 timed events at 20 ms intervals, carrying their send time.
Reported: events delivered per second across all clients (K x 30 over the
time from the first send to the last receipt) and the p99 send -> receive
latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.common import Measurement
from notifycore.testing import free_port

NAME = "SSE fan-out to K clients (Starlette)"
EVENTS = 30

NOTIFYCORE_APP = """
import os
from starlette.applications import Starlette
from starlette.routing import Mount
import notify_starlette
from notifycore import Notifications, PushConsumer

notifications = Notifications(config={"BACKEND": "memory"}, environ={})
notifications.create_hub("Bench").register_consumer(PushConsumer())
app = Starlette(
    routes=[Mount("/notifications", app=notify_starlette.routes(notifications, heartbeat=15.0, max_pending=100_000))],
    lifespan=notify_starlette.lifespan(notifications),
)
"""

BARE_APP = """
import asyncio, json
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

queues = set()

async def stream(request):
    queue = asyncio.Queue()
    queues.add(queue)
    async def events():
        try:
            while True:
                event = await queue.get()
                yield {"id": event["event_id"], "event": event["event_type"], "data": json.dumps(event)}
        finally:
            queues.discard(queue)
    return EventSourceResponse(events())

async def publish(request):
    event = await request.json()
    for queue in list(queues):
        queue.put_nowait(event)
    return JSONResponse({"clients": len(queues)}, status_code=202)

app = Starlette(routes=[Route("/stream", stream), Route("/publish", publish, methods=["POST"])])
"""


def _serve(
    directory: str,
    module: str,
    source: str,
    *,
    command: list[str] | None = None,
    plugins: str = "starlette",
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``source`` as ``module:app`` in its own process (uvicorn, or ``command`` + ``{port}``)."""
    Path(directory, f"{module}.py").write_text(textwrap.dedent(source))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": directory, "NOTIFYCORE_LOAD_PLUGINS": plugins}
    if command is None:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"{module}:app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "2",
        ]
    argv = [part.replace("{port}", str(port)).replace("{module}", module) for part in command]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, base
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{module} did not start") from None
            time.sleep(0.1)


async def _run(stream_url: str, publish_url: str, clients: int) -> tuple[float, list[float]]:
    import httpx

    latencies: list[float] = []
    warm: set[int] = set()
    done = asyncio.Event()
    received = 0

    async def client(http: httpx.AsyncClient, number: int) -> None:
        nonlocal received
        seen = 0
        async with http.stream("GET", stream_url) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:].removeprefix(" "))  # SSE drops one leading space
                if event.get("warmup"):
                    warm.add(number)  # surely subscribed: some servers subscribe after the headers
                    continue
                latencies.append(time.time() - event["sent"])
                seen += 1
                received += 1
                if received == clients * EVENTS:
                    done.set()
                if seen == EVENTS:
                    return

    limits = httpx.Limits(max_connections=clients + 20, max_keepalive_connections=20)
    async with (
        httpx.AsyncClient(timeout=300, limits=limits) as http,
        httpx.AsyncClient(timeout=30) as sender,
    ):
        tasks = [asyncio.create_task(client(http, i)) for i in range(clients)]
        deadline = time.monotonic() + 120
        n = 0
        # Warm-up events until every client has one: then the timed events reach all of them.
        while len(warm) < clients and time.monotonic() < deadline:
            n += 1
            await sender.post(
                publish_url, json={"event_id": f"w{n}", "event_type": "bench", "warmup": True}
            )
            await asyncio.sleep(0.2)
        if len(warm) < clients:
            raise RuntimeError(f"only {len(warm)} of {clients} clients subscribed")
        started = time.perf_counter()
        for i in range(EVENTS):
            body = {
                "event_id": f"e{i}",
                "event_type": "bench",
                "title": f"event {i}",
                "sent": time.time(),
            }
            await sender.post(publish_url, json=body)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*tasks)
    return clients * EVENTS / elapsed, latencies


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000


def run(quick: bool = False) -> list[Measurement]:
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory() as directory:
        for clients in (100,) if quick else (100, 1000):
            ours_server, ours = _serve(directory, "bench_nc_app", NOTIFYCORE_APP)
            try:
                ours_rate, ours_lat = asyncio.run(
                    _run(
                        f"{ours}/notifications/event-hub-Bench/stream",
                        f"{ours}/notifications/events",
                        clients,
                    )
                )
            finally:
                ours_server.terminate()
                ours_server.wait(30)
            bare_server, bare = _serve(directory, "bench_bare_app", BARE_APP)
            try:
                bare_rate, bare_lat = asyncio.run(
                    _run(f"{bare}/stream", f"{bare}/publish", clients)
                )
            finally:
                bare_server.terminate()
                bare_server.wait(30)
            rows.append(
                Measurement(
                    f"SSE fan-out, K = {clients} clients",
                    ours_rate,
                    "bare sse-starlette + asyncio queues",
                    bare_rate,
                    "events/s",
                )
            )
            rows.append(
                Measurement(
                    f"SSE fan-out p99 latency, K = {clients}",
                    _p99(ours_lat),
                    "bare sse-starlette + asyncio queues",
                    _p99(bare_lat),
                    "ms",
                    note="lower is better",
                )
            )
    return rows
