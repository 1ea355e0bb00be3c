"""The plugin module: binds ``Notifications(app=starlette_app)`` to a Starlette app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from notifycore import hookimpl

if TYPE_CHECKING:
    from notifycore import Notifications


@hookimpl
def notifycore_init_app(notifications: Notifications, app: Any) -> bool | None:
    """Claim Starlette apps (FastAPI's too): keep ``notifications`` on ``app.state``.

    Nothing is mounted: mount :func:`notify_starlette.routes` where you want it.
    """
    # Imported here: the plugin loads for every Notifications, Starlette app or not.
    from starlette.applications import Starlette

    if not isinstance(app, Starlette):
        return None
    app.state.notifications = notifications
    return True
