"""examples/flask_notifications_walkthrough: the original guide's steps, checked over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from examples.flask_notifications_walkthrough.app import create_app
from notify_flask.testing import read_events, serve

WAIT = 20.0  # the bound of every wait, never a pass/fail threshold


def test_the_walkthrough_pushes_logs_and_writes_only_the_event_that_passes(tmp_path: Path) -> None:
    app, notifications = create_app(tmp_path)
    try:
        with serve(app) as base, httpx.Client(base_url=base, timeout=WAIT) as client:
            page = client.get("/")
            assert page.status_code == 200
            assert 'new EventSource("/notifications/event-hub-TestHub/stream")' in page.text

            with client.stream("GET", "/notifications/event-hub-TestHub/stream") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                sent = client.post("/send-examples").json()
                assert sent == [
                    {
                        "title": "This event will pass the filter",
                        "hubs": ["TestHub"],
                        "consumers": {
                            "app.write_to_file": "ran",
                            "app.push": "ran",
                            "app.log": "ran",
                        },
                    },
                    {"title": "This event will not pass the filter", "hubs": [], "consumers": {}},
                ]
                (live,) = read_events(stream, 1)
            assert live["event"] == "test"
            assert live["data"]["title"] == "This event will pass the filter"
            assert live["data"]["sender"] == "system"

            # The stream holds only the event that passed: the other never reached a consumer.
            history = client.get("/notifications/event-hub-TestHub/events").json()
            assert [e["event"]["title"] for e in history["events"]] == [
                "This event will pass the filter"
            ]
    finally:
        notifications.close()

    assert (tmp_path / "received.txt").read_text() == "This event will pass the filter\n"
    logged = [json.loads(line) for line in (tmp_path / "events.log").read_text().splitlines()]
    assert [(e["event_type"], e["title"]) for e in logged] == [
        ("test", "This event will pass the filter")
    ]


def test_python_m_runs_the_walkthrough_server(
    tmp_path: Path, processes: Any, port: int, wait_serving: Callable[..., httpx.Response]
) -> None:
    server = processes.start(
        "-m",
        "examples.flask_notifications_walkthrough",
        PORT=str(port),
        WALKTHROUGH_DIR=str(tmp_path),
    )
    base = f"http://127.0.0.1:{port}"
    assert "EventSource" in wait_serving(base + "/", server).text
    sent = httpx.post(base + "/send-examples", timeout=WAIT).json()
    assert [r["hubs"] for r in sent] == [["TestHub"], []]
    assert (tmp_path / "received.txt").read_text() == "This event will pass the filter\n"
