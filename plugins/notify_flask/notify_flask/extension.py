"""Binding a Notifications to a Flask app, the way Flask extensions do.

Settings come from ``app.config`` (every key notifycore or a plugin
declares), on top of those given to the constructor; the state lives in
``app.extensions["notifications"]``, never on the extension object, and
``current_notifications`` reaches it — in templates too.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from werkzeug.local import LocalProxy

from notifycore import Notifications
from notifycore.settings import collect_settings

__all__ = ["current_notifications", "init_app"]

EXTENSION_KEY = "notifications"


def _current() -> Notifications:
    try:
        found = current_app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "this app has no notifications: call Notifications(app) or init_app"
        ) from None
    assert isinstance(found, Notifications)
    return found


#: The current app's Notifications (like ``flask.current_app``).
current_notifications: Any = LocalProxy(_current)


def init_app(notifications: Notifications, app: Flask) -> None:
    """Read the app's settings, store the state in ``app.extensions``, expose it to templates."""
    declared = collect_settings(notifications.plugins)
    from_app = {key: app.config[key] for key in declared if key in app.config}
    notifications.configure({**notifications.config, **from_app})
    app.extensions[EXTENSION_KEY] = notifications

    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"current_notifications": notifications}
