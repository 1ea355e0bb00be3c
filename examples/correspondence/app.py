"""django-redis-pubsub's correspondence example on notifycore, with Starlette.

Users take part in correspondences (conversations). Creating a message
publishes it, as django-redis-pubsub's ``PUBLISH_ON_CREATE`` model did:

- to each participant's own stream (``user:<id>``), which they follow with
  ``GET /notifications/me/stream`` (SSE) or a WebSocket subscribed to ``me``;
- to the correspondence's channel (the hub ``correspondence-<id>``), which a
  participant subscribes to, and unsubscribes from, at run time over the
  WebSocket (``{"action": "subscribe", "stream": "correspondence-1"}``).

Every stream is authenticated by a Bearer token; a user who does not take
part in a correspondence can neither read its channel nor gets its messages.

Run it with ``python -m examples.correspondence`` (``PORT``, default 8000;
``CORRESPONDENCE_DB``, the SQLite file, default ``correspondence.db``).
"""

from __future__ import annotations

import hmac
import itertools
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import notify_starlette
from notifycore import Event, Notifications, PushConsumer
from notifycore.filters import Field, WithEventType

#: The demo's users and their API tokens; a real app checks tokens against its user table.
TOKENS = {"alice": "alice-token", "bob": "bob-token", "carol": "carol-token"}
HUB_PREFIX = "correspondence-"


@dataclass
class Correspondence:
    id: int
    subject: str
    participants: frozenset[str]

    @property
    def channel(self) -> str:
        """The hub label of its channel, the stream name WebSocket clients subscribe to."""
        return f"{HUB_PREFIX}{self.id}"


@dataclass
class Store:
    """The correspondences, in memory (the Django models of the original)."""

    correspondences: dict[int, Correspondence] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, subject: str, participants: frozenset[str]) -> Correspondence:
        with self.lock:
            found = Correspondence(next(self.ids), subject, participants)
            self.correspondences[found.id] = found
            return found


def user_for_token(token: str | None) -> str | None:
    """The user a token belongs to; every token is compared, in constant time."""
    found = None
    for user, expected in TOKENS.items():
        if token is not None and hmac.compare_digest(token.encode(), expected.encode()):
            found = user
    return found


def create_app(database: str | None = None) -> tuple[Starlette, Notifications]:
    url = database or os.environ.get("CORRESPONDENCE_DB", "sqlite:///correspondence.db")
    notifications = Notifications(config={"BACKEND": "sqlite", "BACKEND_URL": url})
    store = Store()

    # Every message goes to each participant's own stream (user:<id>) and to nowhere else.
    inboxes = notifications.create_hub("inboxes").filter_by(WithEventType("message"))
    inboxes.register_consumer(PushConsumer(per_recipient=True, hub_stream=False), name="push")

    def authenticate(request: Any) -> dict[str, str] | None:
        # notify-starlette put the Bearer token on request.state.token.
        user = user_for_token(request.state.token)
        return None if user is None else {"id": user}

    def authorize(principal: Any, stream: str) -> bool:
        """A user reads their own stream and the channels of correspondences they take part in."""
        if principal is None:
            return False
        user = principal["id"]
        if stream == f"user:{user}":
            return True
        label = stream.removeprefix("event-hub-")
        if label.startswith(HUB_PREFIX) and label[len(HUB_PREFIX) :].isdigit():
            found = store.correspondences.get(int(label[len(HUB_PREFIX) :]))
            return found is not None and user in found.participants
        return False  # and "send": raw events are not for clients; messages go through the API

    async def signed_in(request: Request) -> str | JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user = user_for_token(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return JSONResponse({"error": "unauthorized"}, 401)
        return user

    async def json_object(request: Request) -> dict[str, Any] | JSONResponse:
        """The body as a JSON object; else the 400 or 422 to answer (never a 500)."""
        try:
            payload = json.loads(await request.body())
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
            return JSONResponse({"error": "bad_request", "message": "the body is not JSON"}, 400)
        if not isinstance(payload, dict):
            return invalid("body", "must be a JSON object")
        return payload

    def is_text(value: Any) -> bool:
        """A string UTF-8 can encode (JSON's "\\ud800" gives one it cannot)."""
        if not isinstance(value, str):
            return False
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True

    def invalid(field: str, message: str) -> JSONResponse:
        return JSONResponse({"error": "invalid", "field": field, "message": message}, 422)

    async def create_correspondence(request: Request) -> JSONResponse:
        user = await signed_in(request)
        if isinstance(user, JSONResponse):
            return user
        payload = await json_object(request)
        if isinstance(payload, JSONResponse):
            return payload
        others, subject = payload.get("participants", []), payload.get("subject", "")
        if not (isinstance(others, list) and all(is_text(o) for o in others)):
            return invalid("participants", "must be a list of user names")
        if not is_text(subject):
            return invalid("subject", "must be a string")
        participants = frozenset([user, *others])
        unknown = sorted(participants - TOKENS.keys())
        if unknown:
            return JSONResponse({"error": "unknown_users", "users": unknown}, 422)
        found = store.create(subject, participants)
        # Its channel: a hub of its own messages, pushed to the hub's stream. Messages name
        # recipients, so they are private: the channel opts in to carrying them, because
        # authorize lets only the participants read it.
        channel = notifications.create_hub(found.channel)
        channel.filter_by(WithEventType("message") & Field("correspondence", found.id))
        channel.register_consumer(
            PushConsumer(per_recipient=False, broadcast_private=True), name="channel"
        )
        return JSONResponse(
            {"id": found.id, "channel": found.channel, "participants": sorted(participants)}, 201
        )

    async def create_message(request: Request) -> JSONResponse:
        user = await signed_in(request)
        if isinstance(user, JSONResponse):
            return user
        found = store.correspondences.get(int(request.path_params["id"]))
        if found is None:
            return JSONResponse({"error": "not_found"}, 404)
        if user not in found.participants:
            return JSONResponse({"error": "forbidden"}, 403)
        payload = await json_object(request)
        if isinstance(payload, JSONResponse):
            return payload
        body = payload.get("body", "")
        if not is_text(body):
            return invalid("body", "must be a string")
        # Published on create: the event names its recipients, the participants.
        event = Event(
            None,
            "message",
            f"{user} in {found.subject}",
            body,
            sender=user,
            recipients=sorted(found.participants),
            correspondence=found.id,
        )
        result = await notifications.asend(event)
        return JSONResponse({"event_id": result.event.event_id}, 201)

    app = Starlette(
        routes=[
            Route("/correspondences", create_correspondence, methods=["POST"]),
            Route("/correspondences/{id:int}/messages", create_message, methods=["POST"]),
            Mount(
                "/notifications",
                app=notify_starlette.routes(
                    notifications, authenticate=authenticate, authorize=authorize
                ),
            ),
        ],
        lifespan=notify_starlette.lifespan(notifications),
    )
    return app, notifications


def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    app, notifications = create_app()
    print(f"\n  correspondence API on http://127.0.0.1:{port}/ (Ctrl-C to stop); try")
    print(
        f"  curl -N -H 'Authorization: Bearer bob-token' http://127.0.0.1:{port}/notifications/me/stream\n"
    )
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, ws="websockets-sansio", log_level="warning")
    finally:
        notifications.close()
