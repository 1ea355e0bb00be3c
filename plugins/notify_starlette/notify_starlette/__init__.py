"""notify-starlette: notifycore's live streams over SSE and WebSocket for Starlette apps.

``app.mount("/notifications", routes(notifications, authenticate=...))`` and
``Starlette(lifespan=lifespan(notifications))``; see docs/web.md in the notifycore repository.
"""

from notify_starlette.endpoints import routes
from notify_starlette.lifespan import close_streams, lifespan

__all__ = ["close_streams", "lifespan", "routes"]
