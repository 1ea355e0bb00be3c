"""Live streams for Flask: a blueprint of SSE, history and send routes.

Each stream request subscribes to the process's fan-out (one follower per
stream, shared by every client) and writes frames made once per event. A
client that falls behind is disconnected and resumes with ``Last-Event-ID``;
a sleeping client holds no broker connection, only a bounded buffer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from notifycore import (
    BackendUnavailable,
    Event,
    InvalidEvent,
    InvalidStreamId,
    Notifications,
    UnknownHub,
)
from notifycore.event import parse_event_json
from notifycore.sse import HEADERS, FrameCache, comment, reset_frame, retry_frame
from notifycore.web import Access, resume_id, stream_for_hub

__all__ = ["stream_blueprint"]


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


def stream_blueprint(
    notifications: Notifications | None = None,
    *,
    name: str = "notifications",
    url_prefix: str = "/notifications",
    authenticate: Callable[[Any], Any] | None = None,
    authorize: Callable[[Any, str], bool] | None = None,
    allow_query_token: bool = False,
    heartbeat: float = 15.0,
    retry_ms: int = 3000,
) -> Blueprint:
    """The routes, to register on the app (``app.register_blueprint(stream_blueprint(...))``).

    ``authenticate(request) -> principal | None`` (a session, a Bearer token,
    a signed token; ``?token=`` only reaches it when ``allow_query_token``);
    ``authorize(principal, stream) -> bool``. With either configured, nothing
    is readable unless allowed — but a signed-in user's own stream.
    """
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    frames = FrameCache()

    def state() -> tuple[Notifications, Access]:
        found = notifications or current_app.extensions["notifications"]
        return found, Access(found, authenticate, authorize)

    def principal(access: Access) -> Any:
        if not allow_query_token and "token" in request.args:
            return None  # a token in the URL ends up in logs: refused unless the app opts in
        # The request itself, not the context-local proxy: authenticate may keep it.
        return access.principal(request._get_current_object())  # type: ignore[attr-defined]

    def stream_response(found: Notifications, stream: str) -> Response:
        resume = resume_id(request.headers.get("Last-Event-ID"), request.args.get("lastEventId"))
        try:
            subscription = found.fanout.subscribe(stream, resume)
        except InvalidStreamId as exc:
            return _error(400, "bad_request", str(exc))
        except BackendUnavailable as exc:
            return _error(503, "unavailable", str(exc))

        def generate() -> Iterator[bytes]:
            sent = resume
            try:
                yield retry_frame(retry_ms)
                while True:
                    batch = subscription.get(heartbeat)
                    if batch is None:
                        if subscription.closed:
                            return  # slow (it resumes with Last-Event-ID) or shutting down
                        yield comment("ping")
                        continue
                    if batch.reset:
                        # The reset carries where the client already is: a reconnect right
                        # after it must not skip the messages that follow.
                        yield reset_frame(stream, sent)
                    for message in batch.messages:
                        yield frames.get(stream, message)
                        sent = message.id
            finally:
                subscription.close()

        response = Response(
            stream_with_context(generate()), headers=HEADERS, direct_passthrough=True
        )
        # A response whose body never starts (HEAD, a client gone at once) still lets go.
        response.call_on_close(subscription.close)
        return response

    def readable(hub_id: str | None) -> tuple[Notifications, str] | Response:
        """The stream this request may read (the hub's, or the user's own), or the refusal."""
        found, access = state()
        who = principal(access)  # authenticate once per request
        if hub_id is None:
            stream = access.user_stream(who)
            if stream is None:
                return _error(401, "unauthorized", "sign in to read your stream")
        else:
            try:
                stream = stream_for_hub(found, hub_id)
            except UnknownHub as exc:
                return _error(404, "not_found", str(exc))
        if not access.allows(who, stream):
            if who is None and access.configured:
                return _error(401, "unauthorized", "authentication required")
            return _error(403, "forbidden", f"you may not read {stream}")
        return found, stream

    @blueprint.get("/me/stream")
    def my_stream() -> Response:
        target = readable(None)
        return target if isinstance(target, Response) else stream_response(*target)

    @blueprint.get("/<hub_id>/stream")
    def hub_stream(hub_id: str) -> Response:
        target = readable(hub_id)
        return target if isinstance(target, Response) else stream_response(*target)

    @blueprint.get("/<hub_id>/events")
    def history(hub_id: str) -> Response:
        target = readable(hub_id)
        if isinstance(target, Response):
            return target
        found, stream = target
        try:
            batch = found.backend.read(stream, request.args.get("since"), limit=1000)
        except InvalidStreamId as exc:
            return _error(400, "bad_request", str(exc))
        except BackendUnavailable as exc:
            return _error(503, "unavailable", str(exc))
        events = [{"id": m.id, "event": json.loads(m.data)} for m in batch.messages]
        return jsonify({"stream": stream, "events": events, "reset": batch.reset})

    @blueprint.post("/events")
    def send() -> Response:
        found, access = state()
        who = principal(access)
        if access.configured and not access.allows(who, "send"):
            if who is None:
                return _error(401, "unauthorized", "authentication required")
            return _error(403, "forbidden", "you may not send events")
        if not request.is_json:
            return _error(422, "invalid_event", "the body must be a JSON object", field="event")
        limit: int = found.settings["MAX_EVENT_SIZE"]
        data = request.stream.read(limit + 1)  # a larger body is refused, the rest unread
        try:
            if len(data) > limit:
                raise InvalidEvent("event", f"is over the limit of {limit} bytes")
            payload = parse_event_json(data, max_size=None)
            result = found.send(Event.from_dict(payload))
        except InvalidEvent as exc:
            return _error(422, "invalid_event", str(exc), field=exc.field)
        except BackendUnavailable as exc:
            return _error(503, "unavailable", str(exc))
        body = {
            "event_id": result.event.event_id,
            "hubs": result.hubs,
            "outcomes": [
                {"hub": o.hub, "consumer": o.consumer, "status": str(o.status)}
                for o in result.outcomes
            ],
        }
        response = jsonify(body)
        response.status_code = 202
        return response

    return blueprint
