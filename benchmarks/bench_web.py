"""SSE fan-out on one uvicorn process (Starlette), beside a bare sse-starlette app.

notifycore: the notify-starlette routes on the memory backend, a
PushConsumer on one hub. Bare: sse-starlette's ``EventSourceResponse`` per
client fed by its own ``asyncio.Queue``; ``POST /publish`` encodes the
frame once and puts it on every queue (``put_nowait``). Both servers run
side by side, each in its own uvicorn process; K clients (raw asyncio
connections, :mod:`benchmarks.load_client`) run in another process, and
each event is a ``POST`` from the benchmark process carrying its send
time. Three loads, as issue 15 describes them: a burst of 200 events back
to back to K = 1,000, one event every 20 ms to K = 100, one every 150 ms to
K = 1,000. "Back to back" is one publisher sending the next event as soon as
the server answered the last (one kept-alive connection, as one part of an
application sending a batch would): events then arrive as fast as the
server answers a POST while it fans the previous ones out. (An earlier
version sent bursts from 50 connections at once; that measures 50 senders
contending for the server, which is no longer the issue's load.) Each load
runs in rounds alternating the two servers (three; seven for one event every 20 ms to
K = 100, whose p99 over three moved from run to run); the medians are reported: the rate
(deliveries per second, first send to last receipt), p50 and p99 send ->
receive latency, and the server's CPU time per delivery read from
``/proc/<pid>/stat`` (every thread of the process). On 2 cores the server,
the clients and the publisher share the machine with whatever else runs.
"""

from __future__ import annotations

import sys
import tempfile

from benchmarks import webload
from benchmarks.common import Measurement
from benchmarks.webload import Load, Side

NAME = "SSE fan-out on one uvicorn process (Starlette)"
BASELINE = "bare sse-starlette, a queue per client"

NOTIFYCORE_APP = """
from starlette.applications import Starlette
from starlette.routing import Mount
import notify_starlette
from notifycore import Notifications, PushConsumer

notifications = Notifications(config={"BACKEND": "memory"}, environ={})
notifications.create_hub("Bench").register_consumer(PushConsumer())
app = Starlette(
    routes=[Mount("/notifications", app=notify_starlette.routes(notifications, max_pending=100_000))],
    lifespan=notify_starlette.lifespan(notifications),
)
"""

BARE_APP = """
import asyncio, json
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

queues = set()

async def stream(request):
    queue = asyncio.Queue()
    queues.add(queue)
    async def frames():
        try:
            while True:
                yield await queue.get()
        finally:
            queues.discard(queue)
    return EventSourceResponse(frames())

async def publish(request):
    event = await request.json()
    # Encoded once per event, whatever the number of clients.
    frame = ServerSentEvent(
        data=json.dumps(event), id=event["event_id"], event=event["event_type"]
    ).encode()
    for queue in list(queues):
        queue.put_nowait(frame)
    return JSONResponse({"clients": len(queues)}, status_code=202)

app = Starlette(routes=[Route("/stream", stream), Route("/publish", publish, methods=["POST"])])
"""

# The paced loads send enough events that one garbage collection (a full one takes 30-100
# ms with a thousand connections open, on either server) is not the p99 of a round on its
# own. At K = 1,000 a full collection comes every 100-150 events on either server,
# so a round of 120 saw none, one or two, and its p99 told which rather than how often and
# how long they are (three full runs put notifycore's at 0.89, 1.26 and 1.08x bare's): 240.
LOADS = (
    Load("burst of 200, K = 1,000", 1000, 200, 0.0),
    # Seven rounds: the p99 here is set by the few slowest of 500 events (a round is 10 s). One
    # side's p99 ranges from 12 to 29 ms round to round on an otherwise idle machine, and the
    # median of three was 0.96, 0.98 and 1.05 times bare's in three full runs. A round: 15 s.
    Load("one event every 20 ms, K = 100", 100, 500, 0.020, rounds=7),
    Load("one event every 150 ms, K = 1,000", 1000, 240, 0.150),
)
QUICK_LOADS = (
    Load("burst of 50, K = 100", 100, 50, 0.0),
    Load("one event every 20 ms, K = 100", 100, 50, 0.020),
)
LIMITS = (
    "2 cores: the server has one, the clients and the publisher share the other "
    "with the rest of the machine. notifycore pays about 250-300 µs of server CPU more "
    "than the bare app per event, whatever K (measured with one client, alternating "
    "rounds: 1,130 against 830 µs on a busy machine, 650 against 420 µs on another run; "
    "checking the event, matching hubs, Starlette's routing, the 202's outcomes, the "
    "send's own task): 2.5-3 µs per delivery at K = 100, a tenth of that at K = 1,000. "
    "The p99 of the paced loads "
    "moves with full garbage collections (30-100 ms with a thousand connections, on either "
    "server; notifycore's objects are about half bare's, so its full collections are shorter)"
)


def _aims(load: webload.Load) -> dict[str, float]:
    """Issue 15's aims: a burst at least 5x bare's rate; events one at a time, server CPU per
    delivery and p99 no more than bare's."""
    if load.label.startswith("burst"):
        return {"rate": 5.0}
    return {"CPU": 1.0, "p99": 1.0}


def run(quick: bool = False, rounds: int | None = None, verbose: bool = False) -> list[Measurement]:
    loads = QUICK_LOADS if quick else LOADS
    rounds = rounds or (1 if quick else 3)
    progress = webload.progress_printer(verbose)
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory() as directory:
        command = webload.uvicorn_command()
        env = {"NOTIFYCORE_LOAD_PLUGINS": "starlette"}
        ours = webload.serve(directory, "bench_nc_app", NOTIFYCORE_APP, command, env=env)
        try:
            bare = webload.serve(directory, "bench_bare_app", BARE_APP, command)
            try:
                sides = (
                    Side(
                        "notifycore",
                        ours,
                        "/notifications/event-hub-Bench/stream",
                        "/notifications/events",
                    ),
                    Side("bare", bare, "/stream", "/publish"),
                )
                for load in loads:
                    mine, theirs = webload.alternate(sides, load, rounds, progress)
                    results += webload.rows(
                        "SSE (Starlette)", load, BASELINE, mine, theirs, LIMITS, _aims(load)
                    )
            finally:
                bare.stop()
        finally:
            ours.stop()
    return results


if __name__ == "__main__":  # one suite alone: python -m benchmarks.bench_web [--quick]
    from benchmarks.report import table

    print(table(run(quick="--quick" in sys.argv, verbose=True)))
