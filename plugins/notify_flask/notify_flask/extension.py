"""Binding a Notifications to Flask apps, the way Flask extensions do.

Settings come from ``app.config`` (every key notifycore or a plugin
declares), on top of those given to the constructor. The binding lives in
each app's ``app.extensions["notifications"]``, never on the extension
object, and ``current_notifications`` reaches it — in templates too. One
``Notifications`` may serve several apps: their settings must then agree
(one object has one backend and one set of hubs), and binding another app
never rebuilds what the first one uses.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from flask import Flask, current_app
from werkzeug.local import LocalProxy

from notifycore import ConfigurationError, Notifications
from notifycore.settings import collect_settings

__all__ = ["current_notifications", "init_app", "notifications_of_current_app"]

EXTENSION_KEY = "notifications"

#: The apps each Notifications serves (weakly: an app that is gone serves nothing).
_served: weakref.WeakKeyDictionary[Notifications, weakref.WeakSet[Flask]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def notifications_of_current_app() -> Notifications:
    """The current app's Notifications; RuntimeError when it has none."""
    try:
        found = current_app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "this app has no notifications: call Notifications(app) or init_app"
        ) from None
    assert isinstance(found, Notifications)
    return found


#: The current app's Notifications (like ``flask.current_app``).
current_notifications: Any = LocalProxy(notifications_of_current_app)


def init_app(notifications: Notifications, app: Flask) -> None:
    """Read the app's settings, bind ``notifications`` in ``app.extensions``, expose it to templates.

    The first app's settings configure ``notifications``; another app must
    agree with them (it may leave them out), else :class:`ConfigurationError`
    names the keys that differ, and nothing changes.
    """
    declared = collect_settings(notifications.plugins)
    from_app = {key: app.config[key] for key in declared if key in app.config}
    with _lock:
        others = [a for a in _served.get(notifications, ()) if a is not app]
        if others:
            differ = sorted(
                k
                for k, v in from_app.items()
                if k not in notifications.config or notifications.config[k] != v
            )
            if differ:
                raise ConfigurationError(
                    f"app {app.name!r} sets {', '.join(differ)} differently from the app(s) "
                    f"{', '.join(repr(a.name) for a in others)} this Notifications already "
                    "serves; give it the same settings, or its own Notifications"
                )
        else:
            notifications.configure({**notifications.config, **from_app})
            notifications.config.update(from_app)
        _served.setdefault(notifications, weakref.WeakSet()).add(app)
    app.extensions[EXTENSION_KEY] = notifications

    @app.context_processor
    def _inject() -> dict[str, Any]:
        return {"current_notifications": notifications}
