"""The plugin module: claims Flask applications for ``Notifications(app)``."""

from __future__ import annotations

from typing import Any

from flask import Flask

from notify_flask.extension import init_app
from notifycore import Notifications, hookimpl


@hookimpl
def notifycore_init_app(notifications: Notifications, app: Any) -> bool | None:
    if not isinstance(app, Flask):
        return None
    init_app(notifications, app)
    return True
