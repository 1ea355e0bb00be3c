"""Malformed and oversized resume ids (huge offsets, non-ASCII digits) are a 400 on RabbitMQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.sync.client import connect

import notify_starlette
from notify_flask import stream_blueprint
from notify_starlette.testing import serve
from notifycore import InvalidStreamId, Notifications, PushConsumer
from notifycore.testing.web import BAD_STREAM_IDS, check_resume_ids, check_websocket_resume_ids


@pytest.fixture(scope="module")
def notifications(rabbit_server: Any) -> Iterator[Notifications]:
    config = {
        "BACKEND": "amqp",
        "AMQP_URL": rabbit_server.url,
        "AMQP_PREFIX": f"ids-{uuid.uuid4().hex[:8]}.",
    }
    found = Notifications(config=config, environ={})
    found.create_hub("alerts").register_consumer(PushConsumer())
    found.send({"event_type": "alert", "title": "one"})
    yield found
    found.close()


def test_the_backend_refuses_them(notifications: Notifications) -> None:
    for bad in BAD_STREAM_IDS:
        with pytest.raises(InvalidStreamId):
            notifications.backend.read("event-hub-alerts", bad)


def test_flask_answers_400(notifications: Notifications) -> None:
    app = Flask("ids")
    app.register_blueprint(stream_blueprint(notifications))
    client = app.test_client()

    def get(path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, Any]:
        response = client.get(path, query_string=dict(query), headers=dict(headers))
        return response.status_code, response.get_json(silent=True)

    check_resume_ids(
        get, "/notifications/event-hub-alerts/stream", "/notifications/event-hub-alerts/events"
    )


def test_starlette_answers_400_and_the_websocket_goes_on(notifications: Notifications) -> None:
    app = Starlette(routes=[Mount("/n", app=notify_starlette.routes(notifications))])
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:

        def get(path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, Any]:
            raw = {k.encode(): v.encode("latin-1") for k, v in headers.items()}
            response = client.get(path, params=dict(query), headers=raw)
            return response.status_code, response.json()

        check_resume_ids(get, "/n/alerts/stream", "/n/alerts/events")
        with connect(base.replace("http", "ws") + "/n/ws", open_timeout=30) as ws:
            check_websocket_resume_ids(
                lambda message: ws.send(json.dumps(message)),
                lambda: json.loads(ws.recv(timeout=30)),
                "alerts",
            )
