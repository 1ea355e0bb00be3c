"""Flask-TaskWorker's two topologies on notifycore: one app, the worker in it or beside it.

``POST /tasks`` queues a task (an event that a queued consumer handles) and
answers at once; ``GET /tasks/<id>`` tells whether it ran, and in which
process and thread. Both topologies share the SQLite file the jobs wait in:

- ``python -m examples.taskworker_topologies --worker in-process``: the worker
  runs in background threads of the web process (``start_worker()``), like
  Flask-TaskWorker's ``BackgroundTaskWorker``;
- ``python -m examples.taskworker_topologies --worker separate`` and, in
  another terminal, ``notifycore worker --app
  examples.taskworker_topologies.app:notifications``: a blocking worker in
  its own process, like Flask-TaskWorker's ``BlockingTaskWorker``.

``TASKWORKER_DB`` names the SQLite file and ``TASKWORKER_RESULTS`` the folder
the results go to (both in the working directory by default); the web
process and the worker must agree on them.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

from flask import Flask, abort, jsonify, request
from werkzeug.wrappers import Response

from notifycore import Event, Notifications
from notifycore.filters import WithEventType


def results_dir() -> Path:
    return Path(os.environ.get("TASKWORKER_RESULTS", ".")).resolve()


def create_app() -> tuple[Flask, Notifications]:
    app = Flask(__name__)
    database = Path(os.environ.get("TASKWORKER_DB", "taskworker.db")).resolve()
    app.config.update(BACKEND="sqlite", BACKEND_URL=f"sqlite:///{database}", RETRY_BACKOFF=0.5)
    notifications = Notifications(app)
    hub = notifications.create_hub("Tasks").filter_by(WithEventType("task"))

    # The task: queued, so send() only records a job; a worker (here or elsewhere) runs it.
    @hub.register_consumer(name="tasks.run", mode="queued")
    def run_task(event: Event) -> None:
        result = {
            "task": event.title,
            "status": "done",
            "pid": os.getpid(),
            "thread": threading.current_thread().name,
        }
        path = results_dir() / f"{event.event_id}.json"
        # Written whole, then renamed: a reader never sees half a result.
        path.with_suffix(".tmp").write_text(json.dumps(result))
        path.with_suffix(".tmp").replace(path)

    @app.post("/tasks")
    def create_task() -> tuple[Response, int]:
        name = (request.get_json(silent=True) or {}).get("name") or "a task"
        result = notifications.send(Event(None, "task", str(name)))
        return jsonify({"task_id": result.event.event_id, "status": "queued"}), 202

    @app.get("/tasks/<task_id>")
    def task_status(task_id: str) -> Response:
        if not task_id.replace("-", "").isalnum():
            abort(404)
        path = results_dir() / f"{task_id}.json"
        if not path.exists():
            return jsonify({"task_id": task_id, "status": "queued"})
        return jsonify({"task_id": task_id, **json.loads(path.read_text())})

    @app.get("/")
    def index() -> Response:
        return jsonify({"pid": os.getpid(), "worker_in_process": notifications.worker is not None})

    return app, notifications


def notifications() -> Notifications:
    """For ``notifycore worker --app examples.taskworker_topologies.app:notifications``."""
    return create_app()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Flask-TaskWorker's two topologies")
    parser.add_argument("--worker", choices=("in-process", "separate"), default="in-process")
    args = parser.parse_args(argv)
    port = int(os.environ.get("PORT", "5000"))
    app, notes = create_app()
    if args.worker == "in-process":
        notes.start_worker()  # background threads of this process; stopped by close()
        where = "in this process"
    else:
        where = (
            "in another process: notifycore worker --app "
            "examples.taskworker_topologies.app:notifications"
        )
    print(
        f"\n  tasks API on http://127.0.0.1:{port}/ (pid {os.getpid()}), worker {where}", flush=True
    )
    try:
        app.run(host="127.0.0.1", port=port, threaded=True)
    finally:
        notes.close()
    return 0
