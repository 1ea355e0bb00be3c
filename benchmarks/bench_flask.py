"""The Flask adapter beside flask-sse, fanning out to K SSE clients, measured as the Starlette rows.

Both apps run under gunicorn, one ``gthread`` worker with a thread per
client, each in its own process on 127.0.0.1. notifycore: the notify-flask
blueprint on the memory backend (one follower for the stream, fanned out in
the process). flask-sse: its blueprint on Redis pub/sub (one Redis
subscription per client, each event parsed and framed per client) with a
private redis-server, whose CPU time counts as the server's; its stream is
flask-sse's ``messages()`` framed as its blueprint does, opened with an SSE
comment (gunicorn sends the headers with the first chunk, and the clients
wait for them before the first event). flask-sse and
gunicorn are installed into the running environment the first time this
benchmark runs (the benchmark environment only: nothing in notifycore
depends on them). Clients, loads, rounds and measures are the Starlette
rows' (:mod:`benchmarks.bench_web`).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile

from benchmarks import bench_web, webload
from benchmarks.bench_redis import redis_server
from benchmarks.common import Measurement
from benchmarks.webload import Side

NAME = "SSE fan-out on one gunicorn worker (Flask)"
BASELINE = "flask-sse (Redis pub/sub)"

NOTIFYCORE_APP = """
from flask import Flask
from notify_flask import stream_blueprint
from notifycore import Notifications, PushConsumer

app = Flask("bench")
app.config["BACKEND"] = "memory"
notifications = Notifications(app, environ={})
notifications.create_hub("Bench").register_consumer(PushConsumer())
app.register_blueprint(stream_blueprint(max_pending=100_000))
"""

FLASK_SSE_APP = """
import os
from flask import Flask, Response, request, stream_with_context
from flask_sse import sse

app = Flask("bench")
app.config["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
app.register_blueprint(sse, url_prefix="/sse")

@app.get("/stream")
def stream():
    # flask-sse's own stream, opened with a comment: gunicorn sends the headers
    # with the first chunk, and flask-sse's first chunk is the first event.
    def frames():
        yield ": open\\n\\n"
        for message in sse.messages():
            yield str(message)
    return Response(stream_with_context(frames()), mimetype="text/event-stream")

@app.post("/publish")
def publish():
    event = request.get_json()
    sse.publish(event, type=event["event_type"], id=event["event_id"])
    return {"ok": True}, 202
"""

LIMITS = (
    "2 cores: one gunicorn worker, a thread per client (the GIL serialises them); "
    "the clients and the publisher share the other core"
)


def _ensure(module: str, requirement: str) -> None:
    if importlib.util.find_spec(module) is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement], check=True)


def _gunicorn(threads: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "gunicorn", "{module}:app", "--bind", "127.0.0.1:{port}"),
        *("--workers", "1", "--worker-class", "gthread", "--threads", str(threads)),
        *("--worker-connections", str(threads), "--backlog", "4096", "--timeout", "300"),
        *("--log-level", "warning"),
    ]


def run(quick: bool = False, rounds: int | None = None, verbose: bool = False) -> list[Measurement]:
    _ensure("flask_sse", "flask-sse>=1.0")
    _ensure("gunicorn", "gunicorn>=22")
    loads = bench_web.QUICK_LOADS if quick else bench_web.LOADS
    rounds = rounds or (1 if quick else 3)
    progress = webload.progress_printer(verbose)
    # Threads for two rounds' clients: flask-sse frees a gone client's thread only when it next
    # writes to it.
    command = _gunicorn(2 * max(load.clients for load in loads) + 64)
    results: list[Measurement] = []
    with redis_server() as redis, tempfile.TemporaryDirectory() as directory:
        env = {"NOTIFYCORE_LOAD_PLUGINS": "flask"}
        ours = webload.serve(directory, "bench_flask_nc", NOTIFYCORE_APP, command, env=env)
        try:
            env = {"NOTIFYCORE_LOAD_PLUGINS": "", "BENCH_REDIS_URL": redis.url}
            other = webload.serve(directory, "bench_flask_sse", FLASK_SSE_APP, command, env=env)
            assert redis.process is not None
            other.helpers.append(redis.process.pid)
            try:
                sides = (
                    Side(
                        "notifycore",
                        ours,
                        "/notifications/event-hub-Bench/stream",
                        "/notifications/events",
                    ),
                    Side("flask-sse", other, "/stream", "/publish"),
                )
                for load in loads:
                    # Started again before each round: flask-sse's worker kept a core busy for
                    # minutes after its rounds (gone clients' threads), through notifycore's.
                    mine, theirs = webload.alternate(sides, load, rounds, progress, fresh=True)
                    results += webload.rows("SSE (Flask)", load, BASELINE, mine, theirs, LIMITS)
            finally:
                other.stop()
        finally:
            ours.stop()
    return results


if __name__ == "__main__":  # one suite alone: python -m benchmarks.bench_flask [--quick]
    from benchmarks.report import table

    print(table(run(quick="--quick" in sys.argv, verbose=True)))
