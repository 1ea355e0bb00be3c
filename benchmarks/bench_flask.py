"""The Flask adapter beside flask-sse, fanning out to K concurrent SSE clients.

Both apps run under gunicorn with one ``gthread`` worker and a thread per
client, in their own process on 127.0.0.1. notifycore: the notify-flask
blueprint on the memory backend (one follower for the stream, fanned out in
the process). flask-sse: its blueprint on Redis pub/sub (one Redis
subscription per client) with a private redis-server. flask-sse and gunicorn
are installed into the running environment the first time this benchmark
runs (the benchmark environment only: nothing in notifycore depends on
them). Clients, events and measures are the Starlette rows'.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import subprocess
import sys
import tempfile

from benchmarks import bench_web
from benchmarks.bench_redis import redis_server
from benchmarks.common import Measurement

NAME = "SSE fan-out to K clients (Flask)"

NOTIFYCORE_APP = """
from flask import Flask
from notify_flask import stream_blueprint
from notifycore import Notifications, PushConsumer

app = Flask("bench")
app.config["BACKEND"] = "memory"
notifications = Notifications(app, environ={})
notifications.create_hub("Bench").register_consumer(PushConsumer())
notifications.fanout.max_pending = 100_000
app.register_blueprint(stream_blueprint(heartbeat=15.0))
"""

FLASK_SSE_APP = """
import os
from flask import Flask, request
from flask_sse import sse

app = Flask("bench")
app.config["REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")

@app.post("/publish")
def publish():
    event = request.get_json()
    sse.publish(event, type=event["event_type"], id=event["event_id"])
    return {"ok": True}, 202
"""


def _ensure(module: str, requirement: str) -> None:
    if importlib.util.find_spec(module) is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement], check=True)


def _gunicorn(threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "{module}:app",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--worker-connections",
        str(threads),
        "--backlog",
        "2048",
        "--timeout",
        "300",
        "--log-level",
        "warning",
    ]


def run(quick: bool = False) -> list[Measurement]:
    _ensure("flask_sse", "flask-sse>=1.0")
    _ensure("gunicorn", "gunicorn>=22")
    import os

    rows: list[Measurement] = []
    servers = contextlib.ExitStack()
    os.environ["BENCH_REDIS_URL"] = servers.enter_context(redis_server()).url
    try:
        with tempfile.TemporaryDirectory() as directory:
            for clients in (100,) if quick else (100, 1000):
                command = _gunicorn(clients + 20)
                server, ours = bench_web._serve(
                    directory, "bench_flask_nc", NOTIFYCORE_APP, command=command, plugins="flask"
                )
                try:
                    ours_rate, ours_lat = asyncio.run(
                        bench_web._run(
                            f"{ours}/notifications/event-hub-Bench/stream",
                            f"{ours}/notifications/events",
                            clients,
                        )
                    )
                finally:
                    server.kill()
                    server.wait(30)
                server, other = bench_web._serve(
                    directory, "bench_flask_sse", FLASK_SSE_APP, command=command, plugins=""
                )
                try:
                    other_rate, other_lat = asyncio.run(
                        bench_web._run(f"{other}/stream", f"{other}/publish", clients)
                    )
                finally:
                    server.kill()
                    server.wait(30)
                rows.append(
                    Measurement(
                        f"Flask SSE fan-out, K = {clients} clients",
                        ours_rate,
                        "flask-sse (Redis pub/sub)",
                        other_rate,
                        "events/s",
                    )
                )
                rows.append(
                    Measurement(
                        f"Flask SSE fan-out p99 latency, K = {clients}",
                        bench_web._p99(ours_lat),
                        "flask-sse (Redis pub/sub)",
                        bench_web._p99(other_lat),
                        "ms",
                        note="lower is better",
                    )
                )
    finally:
        servers.close()
    return rows
