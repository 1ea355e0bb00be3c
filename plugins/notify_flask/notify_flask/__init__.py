"""notify-flask: notifycore for Flask applications."""

from notify_flask.blueprint import stream_blueprint
from notify_flask.extension import current_notifications, init_app

__all__ = ["current_notifications", "init_app", "stream_blueprint"]
