"""examples/taskworker_topologies: the same app with its worker in the web process, then in its own."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from notifycore.testing import wait_for

WAIT = 20.0


def run_task(base: str, name: str) -> dict[str, Any]:
    """Queue a task over HTTP and poll its status until it ran (bounded)."""
    queued = httpx.post(f"{base}/tasks", json={"name": name}, timeout=WAIT)
    assert queued.status_code == 202
    task_id = queued.json()["task_id"]
    status: dict[str, Any] = {}

    def ran() -> bool:
        status.update(httpx.get(f"{base}/tasks/{task_id}", timeout=WAIT).json())
        return bool(status["status"] == "done")

    wait_for(ran, WAIT, f"task {name!r} to run")
    return status


def test_the_worker_in_the_web_process(
    tmp_path: Path, processes: Any, port: int, wait_serving: Callable[..., httpx.Response]
) -> None:
    env = {"TASKWORKER_DB": str(tmp_path / "jobs.db"), "TASKWORKER_RESULTS": str(tmp_path)}
    web = processes.start(
        "-m", "examples.taskworker_topologies", "--worker", "in-process", PORT=str(port), **env
    )
    base = f"http://127.0.0.1:{port}"
    assert wait_serving(base + "/", web).json() == {"pid": web.pid, "worker_in_process": True}
    done = run_task(base, "resize")
    assert (done["task"], done["pid"]) == ("resize", web.pid)
    assert done["thread"].startswith("notifycore-worker")


def test_a_blocking_worker_in_another_process(
    tmp_path: Path, processes: Any, port: int, wait_serving: Callable[..., httpx.Response]
) -> None:
    env = {"TASKWORKER_DB": str(tmp_path / "jobs.db"), "TASKWORKER_RESULTS": str(tmp_path)}
    web = processes.start(
        "-m", "examples.taskworker_topologies", "--worker", "separate", PORT=str(port), **env
    )
    base = f"http://127.0.0.1:{port}"
    assert wait_serving(base + "/", web).json() == {"pid": web.pid, "worker_in_process": False}

    # No worker anywhere yet: the task waits in the SQLite file.
    queued = httpx.post(f"{base}/tasks", json={"name": "waiting"}, timeout=WAIT).json()
    status = httpx.get(f"{base}/tasks/{queued['task_id']}", timeout=WAIT).json()
    assert status["status"] == "queued"

    worker = processes.start(
        "notifycore", "worker", "--app", "examples.taskworker_topologies.app:notifications", **env
    )
    done = run_task(base, "resize")
    assert (done["task"], done["pid"]) == ("resize", worker.pid)
    waited = httpx.get(f"{base}/tasks/{queued['task_id']}", timeout=WAIT).json()
    assert (waited["status"], waited["pid"]) == ("done", worker.pid)

    # The blocking worker stops cleanly on SIGTERM.
    worker.send_signal(signal.SIGTERM)
    output = worker.communicate(timeout=WAIT)[0]
    assert worker.returncode == 0, output
