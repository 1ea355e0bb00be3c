"""Flask's extension pattern: per-app state in ``app.extensions``, one object for several apps."""

from __future__ import annotations

import threading

import httpx
import pytest
from flask import Flask

from notify_flask import current_notifications, stream_blueprint
from notify_flask.testing import read_events, serve
from notifycore import ConfigurationError, Notifications, PushConsumer


def test_one_notifications_serves_two_apps() -> None:
    notifications = Notifications(environ={})
    notifications.create_hub("Chat").register_consumer(PushConsumer())
    first, second = Flask("first"), Flask("second")
    first.config.update(BACKEND="memory", MAX_TRIES=7)
    second.config.update(MAX_TRIES=7)  # the same settings, or none: the object is shared
    notifications.init_app(first)
    backend = notifications.backend
    notifications.init_app(second)
    assert notifications.backend is backend, "binding another app rebuilds nothing"
    assert notifications.settings["MAX_TRIES"] == 7
    for app in (first, second):
        app.register_blueprint(stream_blueprint(heartbeat=0.2))
        assert app.extensions["notifications"] is notifications
        with app.app_context():
            assert current_notifications.get_hub("Chat").hub_id == "event-hub-Chat"
    try:
        with (
            serve(first) as one,
            serve(second) as two,
            httpx.Client(timeout=20) as http,
            http.stream("GET", f"{two}/notifications/event-hub-Chat/stream") as stream,
        ):
            post = threading.Timer(
                0.2,
                lambda: http.post(f"{one}/notifications/events", json={"event_type": "chat"}),
            )
            post.start()
            (got,) = read_events(stream, 1, kinds=("chat",))
            post.join(20)
            history = http.get(f"{one}/notifications/event-hub-Chat/events").json()
        assert [e["id"] for e in history["events"]] == [got["id"]]
    finally:
        notifications.close()


def test_an_app_whose_settings_disagree_is_refused_and_changes_nothing() -> None:
    notifications = Notifications(environ={})
    first, other = Flask("first"), Flask("other")
    first.config.update(BACKEND="memory", MAX_TRIES=3)
    other.config.update(BACKEND="memory", MAX_TRIES=4)
    notifications.init_app(first)
    backend = notifications.backend
    with pytest.raises(
        ConfigurationError, match=r"app 'other' sets MAX_TRIES differently.*'first'"
    ):
        notifications.init_app(other)
    assert notifications.backend is backend and notifications.settings["MAX_TRIES"] == 3
    assert "notifications" not in other.extensions
    notifications.close()


def test_one_blueprint_serves_each_app_its_own_notifications() -> None:
    blueprint = stream_blueprint()
    apps, all_notifications = [], []
    for name in ("left", "right"):
        app = Flask(name)
        app.config["BACKEND"] = "memory"
        notifications = Notifications(app, environ={})
        notifications.create_hub("Chat").register_consumer(PushConsumer())
        notifications.send({"event_type": "chat", "title": name})
        app.register_blueprint(blueprint)
        apps.append(app)
        all_notifications.append(notifications)
    try:
        for app in apps:
            history = app.test_client().get("/notifications/event-hub-Chat/events").get_json()
            events = history["events"]
            assert [e["event"]["title"] for e in events] == [app.name]
    finally:
        for notifications in all_notifications:
            notifications.close()
