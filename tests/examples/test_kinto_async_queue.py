"""examples/kinto_async_queue: records queued on a real Redis, run in order by a worker process."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.kinto_async_queue.app import create_app
from notify_flask.testing import serve
from notifycore.testing import wait_for

WAIT = 20.0
RECORDS = "/buckets/default/collections/notes/records"


def processed(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jobs_wait_on_redis_until_the_worker_script_runs_them_in_order(
    redis_server: Any, processes: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment overrides the file's REDIS_URL, in this process and in the worker's.
    monkeypatch.setenv("NOTIFYCORE_REDIS_URL", redis_server.url)
    output = tmp_path / "processed.jsonl"
    app, notifications = create_app()
    try:
        with serve(app) as base, httpx.Client(base_url=base, timeout=WAIT) as client:

            def create(note: str) -> str:
                response = client.post(RECORDS, json={"data": {"note": note}}, auth=("alice", "s"))
                assert response.status_code == 201
                return f"{RECORDS}/{response.json()['data']['id']}"

            # No worker yet: the requests return at once and the jobs wait on the Redis queue.
            uris = [create(f"note {i}") for i in range(5)]
            assert notifications.backend.queue_length("eventqueue") == 5
            updated = client.patch(uris[0], json={"data": {"note": "edited"}}, auth=("alice", "s"))
            assert updated.status_code == 200
            assert notifications.backend.queue_length("eventqueue") == 5, "updates are not queued"
            assert not output.exists()

            worker = processes.start(
                "-m",
                "examples.kinto_async_queue.worker",
                NOTIFYCORE_REDIS_URL=redis_server.url,
                KINTO_QUEUE_OUTPUT=str(output),
            )
            wait_for(lambda: len(processed(output)) == 5, WAIT, "the worker to run the 5 jobs")
            # Records created while the worker runs are handled after, still in order.
            uris += [create(f"later {i}") for i in range(3)]
            wait_for(lambda: len(processed(output)) == 8, WAIT, "the worker to run 3 more")
            # A job is acked after its consumer wrote its line (with the next reservation).
            wait_for(
                lambda: notifications.backend.queue_length("eventqueue") == 0, WAIT, "the acks"
            )
    finally:
        notifications.close()

    lines = processed(output)
    assert [line["uri"] for line in lines] == uris
    assert {line["action"] for line in lines} == {"create"}
    assert {line["user_id"] for line in lines} == {"account:alice"}
    assert {line["pid"] for line in lines} == {worker.pid} != {os.getpid()}

    worker.send_signal(signal.SIGTERM)
    out = worker.communicate(timeout=WAIT)[0]
    assert worker.returncode == 0, out
    assert "worker: stopped" in out


def test_python_m_runs_the_records_api_and_the_worker_script(
    redis_server: Any,
    processes: Any,
    tmp_path: Path,
    port: int,
    wait_serving: Callable[..., httpx.Response],
) -> None:
    output = tmp_path / "processed.jsonl"
    env = {"NOTIFYCORE_REDIS_URL": redis_server.url, "KINTO_QUEUE_OUTPUT": str(output)}
    web = processes.start("-m", "examples.kinto_async_queue", PORT=str(port), **env)
    processes.start("-m", "examples.kinto_async_queue.worker", **env)
    base = f"http://127.0.0.1:{port}"
    assert wait_serving(base + "/", web).status_code == 404
    created = httpx.post(base + RECORDS, json={"data": {}}, auth=("bob", "s"), timeout=WAIT)
    assert created.status_code == 201
    wait_for(lambda: len(processed(output)) == 1, WAIT, "the worker to run the job")
    assert processed(output)[0]["user_id"] == "account:bob"
