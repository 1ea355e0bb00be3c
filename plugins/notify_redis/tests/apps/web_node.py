"""One web node of the many-nodes test: the same hubs behind Flask and behind Starlette.

gunicorn serves ``web_node:flask_app``, uvicorn ``web_node:starlette_app``; the
backend and its URL come from the ``NOTIFYCORE_*`` variables, so every node of a
test shares one broker. The routes are mounted under ``/n``.
"""

from __future__ import annotations

from flask import Flask
from starlette.applications import Starlette
from starlette.routing import Mount

import notify_starlette
from notify_flask import stream_blueprint
from notifycore import Notifications, PushConsumer

notifications = Notifications()  # BACKEND, REDIS_URL or BACKEND_URL from NOTIFYCORE_*
notifications.create_hub("alerts").register_consumer(PushConsumer())

flask_app = Flask("web-node")
flask_app.register_blueprint(stream_blueprint(notifications, url_prefix="/n", heartbeat=1.0))

starlette_app = Starlette(
    routes=[Mount("/n", app=notify_starlette.routes(notifications, heartbeat=1.0))],
    lifespan=notify_starlette.lifespan(notifications),
)
