"""Browsers resume on RabbitMQ too: Last-Event-ID is a stream offset (notify-flask, real HTTP)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from flask import Flask

from notify_flask import stream_blueprint
from notify_flask.testing import read_events, serve
from notifycore import Event, Notifications, PushConsumer


def test_live_stream_and_last_event_id_resume_over_rabbitmq(rabbit_server: Any) -> None:
    app = Flask("amqpweb")
    app.config.update(
        BACKEND="amqp", AMQP_URL=rabbit_server.url, AMQP_PREFIX=f"web-{uuid.uuid4().hex[:6]}."
    )
    notifications = Notifications(app, environ={})
    notifications.create_hub("Chat").register_consumer(PushConsumer())
    app.register_blueprint(stream_blueprint(heartbeat=0.2))
    url = "/notifications/event-hub-Chat/stream"

    def send(title: str) -> None:
        notifications.send(Event(None, "chat", title, "body"))

    try:
        with serve(app) as base, httpx.Client(timeout=20) as client:
            with client.stream("GET", base + url) as response:
                assert response.status_code == 200
                # The stream subscribed before it answered: these are live, not missed.
                for i in range(3):
                    send(f"m{i}")
                live = read_events(response, 3)
            assert [e["data"]["title"] for e in live] == ["m0", "m1", "m2"]
            assert [int(e["id"]) for e in live] == sorted(int(e["id"]) for e in live)
            send("m3")  # while nobody listens
            with client.stream(
                "GET", base + url, headers={"Last-Event-ID": live[0]["id"]}
            ) as response:
                resumed = read_events(response, 3)
            assert [e["data"]["title"] for e in resumed] == ["m1", "m2", "m3"]
            assert [e["id"] for e in resumed[:2]] == [e["id"] for e in live[1:]]
    finally:
        notifications.close()
