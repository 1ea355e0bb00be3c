"""The routes and lifespan on SQLite, for the clients-that-never-read tests (run by uvicorn).

``STUCK_DB`` is the SQLite URL the test publishes to and ``SEND_TIMEOUT`` the routes'.
``GET /debug`` tells which streams still have a subscriber.
"""

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import notify_starlette
from notifycore import Notifications, PushConsumer

notifications = Notifications(
    config={"BACKEND": "sqlite", "BACKEND_URL": os.environ["STUCK_DB"]}, environ={}
)
notifications.create_hub("alerts").register_consumer(PushConsumer())


async def debug(request: Request) -> JSONResponse:
    return JSONResponse({"streams": notifications.fanout.streams})


app = Starlette(
    routes=[
        Route("/debug", debug),
        Mount(
            "/n",
            app=notify_starlette.routes(
                notifications, heartbeat=0.2, send_timeout=float(os.environ["SEND_TIMEOUT"])
            ),
        ),
    ],
    lifespan=notify_starlette.lifespan(notifications),
)
