"""Live streams for Flask: a blueprint of SSE, history and send routes.

Each stream request subscribes to the process's fan-out (one follower per
stream, shared by every client) and writes frames made once per event. A
client that falls behind is disconnected and resumes with ``Last-Event-ID``;
a sleeping client holds no broker connection, only a bounded buffer. A
client that stops reading is dropped after ``send_timeout`` seconds on one
write, so it never pins a server thread.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from notifycore import (
    BackendUnavailable,
    InvalidEvent,
    InvalidStreamId,
    Notifications,
    UnknownHub,
)
from notifycore.sse import HEADERS, FrameCache, comment, reset_frame, retry_frame
from notifycore.web import (
    Access,
    AuthorizeSend,
    client_stream_id,
    cross_site_refusal,
    is_json,
    resume_id,
    stream_for_hub,
)

__all__ = ["stream_blueprint"]

#: Where WSGI servers put the client's socket: werkzeug's, gunicorn's sync and gthread workers.
_SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


def _client_socket(environ: dict[str, Any]) -> socket.socket | None:
    for key in _SOCKET_KEYS:
        found = environ.get(key)
        if isinstance(found, socket.socket):
            return found
    return None


def _error(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


def _body(limit: int) -> bytes:
    """The request body, read no further than one byte past ``limit`` (then it is refused)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = request.stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def stream_blueprint(
    notifications: Notifications | None = None,
    *,
    name: str = "notifications",
    url_prefix: str = "/notifications",
    authenticate: Callable[[Any], Any] | None = None,
    authorize: Callable[[Any, str], bool] | None = None,
    authorize_send: AuthorizeSend | None = None,
    allow_query_token: bool = False,
    trusted_origins: Iterable[str] = (),
    heartbeat: float = 15.0,
    retry_ms: int = 3000,
    send_timeout: float | None = 10.0,
) -> Blueprint:
    """The routes, to register on the app (``app.register_blueprint(stream_blueprint(...))``).

    ``authenticate(request) -> principal | None`` (a session, a Bearer token,
    a signed token; ``?token=`` only reaches it when ``allow_query_token``);
    ``authorize(principal, stream) -> bool``. With either configured, nothing
    is readable unless allowed — but a signed-in user's own stream, always.
    ``authorize_send(principal, event) -> bool`` decides who sends what
    (else ``authorize(principal, "send")``, and the sender is the principal).
    ``trusted_origins`` are other origins whose pages may ``POST /events``
    with the browser's cookies. ``send_timeout`` bounds one write to a
    stream's client (None: no bound).
    """
    if send_timeout is not None and send_timeout <= 0:
        raise ValueError("send_timeout must be > 0 or None")
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    frames = FrameCache()
    trusted = tuple(trusted_origins)

    def state() -> tuple[Notifications, Access]:
        found = notifications or current_app.extensions["notifications"]
        return found, Access(found, authenticate, authorize, authorize_send)

    def principal(access: Access) -> Any:
        if not allow_query_token and "token" in request.args:
            return None  # a token in the URL ends up in logs: refused unless the app opts in
        # The request itself, not the context-local proxy: authenticate may keep it.
        return access.principal(request._get_current_object())  # type: ignore[attr-defined]

    def stream_response(found: Notifications, stream: str) -> Response:
        try:
            resume = resume_id(
                request.headers.get("Last-Event-ID"), request.args.get("lastEventId")
            )
            subscription = found.fanout.subscribe(stream, resume)
        except InvalidStreamId as exc:
            return _error(400, "bad_request", f"malformed Last-Event-ID: {exc}")
        except BackendUnavailable as exc:
            return _error(503, "unavailable", str(exc))
        # Bounds each write: a client that stops reading fails it, and the server drops it.
        client = _client_socket(request.environ) if send_timeout is not None else None

        def generate() -> Iterator[bytes]:
            sent = resume
            previous = client.gettimeout() if client is not None else None
            try:
                if client is not None:
                    client.settimeout(send_timeout)
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
                if client is not None:
                    with contextlib.suppress(OSError):  # the server may have closed it already
                        client.settimeout(previous)

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
            since = client_stream_id(request.args.get("since"), "since")
            batch = found.backend.read(stream, since, limit=1000)
        except InvalidStreamId as exc:
            return _error(400, "bad_request", f"malformed since: {exc}")
        except BackendUnavailable as exc:
            return _error(503, "unavailable", str(exc))
        events = [{"id": m.id, "event": json.loads(m.data)} for m in batch.messages]
        return jsonify({"stream": stream, "events": events, "reset": batch.reset})

    @blueprint.post("/events")
    def send() -> Response:
        found, access = state()
        cross_site = cross_site_refusal(
            authorization=request.headers.get("Authorization"),
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            host=request.host,
            trusted_origins=trusted,
        )
        if cross_site is not None:
            return _error(403, "forbidden", cross_site)
        if not is_json(request.headers.get("Content-Type")):
            return _error(
                415, "unsupported_media_type", "send the event as Content-Type: application/json"
            )
        who = principal(access)
        try:
            limit: int = found.settings["MAX_EVENT_SIZE"]
            data = _body(limit)
            if len(data) > limit:  # only limit + 1 bytes were read: the size is unknown
                raise InvalidEvent("event", f"is over the limit of {limit} bytes")
            event = found.coerce_event(data)
            allowed = access.sendable(who, event)  # the sender it sets is checked like any
        except InvalidEvent as exc:
            return _error(422, "invalid_event", exc.message, field=exc.field)
        if allowed is None:
            if who is None and access.configured:
                return _error(401, "unauthorized", "authentication required")
            return _error(403, "forbidden", "you may not send this event")
        try:
            result = found.send(allowed)
        except InvalidEvent as exc:
            return _error(422, "invalid_event", exc.message, field=exc.field)
        except BackendUnavailable as exc:
            return _error(503, "unavailable", str(exc))
        body = {
            "event_id": result.event.event_id,
            "sender": result.event.sender,
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
