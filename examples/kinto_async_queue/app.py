"""The records API of ../kinto_email_listener, configured with this folder's queued listener.

Run it with ``python -m examples.kinto_async_queue``; the request returns as
soon as the job is on the Redis queue. ``python -m examples.kinto_async_queue.worker``
runs the jobs, in another process.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from examples.kinto_email_listener import app as records_api
from notifycore import Notifications

CONFIG = Path(__file__).resolve().parent / "notifycore.ini"


def create_app(config: str | os.PathLike[str] | None = None) -> tuple[Flask, Notifications]:
    return records_api.create_app(config or os.environ.get("KINTO_EXAMPLE_CONFIG", CONFIG))


def main() -> None:
    port = int(os.environ.get("PORT", "8888"))
    app, notifications = create_app()
    print(f"\n  records API on http://127.0.0.1:{port}/, jobs on {notifications.backend!r}")
    print("  run the worker in another terminal: python -m examples.kinto_async_queue.worker\n")
    try:
        app.run(host="127.0.0.1", port=port, threaded=True)
    finally:
        notifications.close()
