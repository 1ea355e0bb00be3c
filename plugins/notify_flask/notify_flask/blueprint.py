"""Live streams for Flask: a blueprint binding notifycore's web protocol.

The routes, replies, errors, heartbeats and frames are the core's
(:mod:`notifycore.web.protocol`); this module only turns a Flask request into
a :class:`~notifycore.web.WebRequest` and a reply into a Flask response.
Each stream request subscribes to the process's fan-out (one follower per
stream, shared by every client). A client that stops reading is dropped
after ``send_timeout`` seconds on one write, so it never pins a server thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from flask import Blueprint, Response, request, stream_with_context
from flask.blueprints import BlueprintSetupState

from notify_flask.extension import notifications_of_current_app
from notify_flask.inbox_routes import add_inbox_routes
from notifycore.web import EventStream, Refusal, Reply, WebOptions, WebProtocol, WebRequest
from notifycore.web.access import Authenticate, Authorize, AuthorizeSend
from notifycore.web.protocol import ROUTES, no_such_route, other_method

if TYPE_CHECKING:
    from notifycore import Notifications

__all__ = ["stream_blueprint"]

#: Where WSGI servers put the client's socket: werkzeug's, gunicorn's sync and gthread workers.
_SOCKET_KEYS = ("werkzeug.socket", "gunicorn.socket")


def _client_socket(environ: dict[str, Any]) -> socket.socket | None:
    for key in _SOCKET_KEYS:
        found = environ.get(key)
        if isinstance(found, socket.socket):
            return found
    return None


def _read_body(limit: int) -> bytes:
    """The request body, read no further than one byte past ``limit`` (then it is refused).

    A body cut short — the client left before its end, or broke its chunks off — is a 400,
    never used: the servers tell it differently (werkzeug's ``ClientDisconnected``, an
    ``OSError`` such as gunicorn's ``NoMoreData``, gunicorn's ``ChunkMissingTerminator``
    or ``InvalidChunkSize``), or not at all (gunicorn hands over fewer bytes than
    ``Content-Length`` said, then ends the stream).
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:
            chunk = request.stream.read(min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except Exception:  # the server's word for it, whichever (see above)
        raise _cut_short() from None
    declared = request.content_length
    if declared is not None and size < min(declared, limit + 1):
        raise _cut_short()
    return b"".join(chunks)


def _cut_short() -> Refusal:
    return Refusal(
        400, "bad_request", "the request body was cut short or malformed (the client left?)"
    )


def _without_query_token(native: Any) -> Any:
    """A copy of the request whose query string has no ``token``, the rest left byte for byte."""
    environ = dict(native.environ)
    pairs = environ.get("QUERY_STRING", "").split("&")
    environ["QUERY_STRING"] = "&".join(
        pair for pair in pairs if unquote_plus(pair.partition("=")[0]) != "token"
    )
    return native.__class__(environ)


def _incoming() -> WebRequest:
    return WebRequest(
        # The request itself, not the context-local proxy: authenticate may keep it.
        native=request._get_current_object(),  # type: ignore[attr-defined]
        headers=request.headers,
        query=request.args,
        host=request.host,
        # The app's view: werkzeug's ProxyFix, when the app uses it, applied X-Forwarded-Proto.
        scheme=request.scheme,
        without_query_token=_without_query_token,
        read_body=_read_body,
    )


def _response(reply: Reply) -> Response:
    response = Response(reply.body, status=reply.status, headers=dict(reply.headers))
    if "Content-Type" not in reply.headers:  # a 204 has no body to describe
        del response.headers["Content-Type"]
    return response


def stream_blueprint(
    notifications: Notifications | None = None,
    *,
    name: str = "notifications",
    url_prefix: str = "/notifications",
    authenticate: Authenticate | None = None,
    authorize: Authorize | None = None,
    authorize_send: AuthorizeSend | None = None,
    allow_query_token: bool = False,
    trusted_origins: Iterable[str] = (),
    heartbeat: float = 15.0,
    retry_ms: int = 3000,
    send_timeout: float | None = 10.0,
    max_pending: int | None = None,
    named_events: bool = True,
    allow_critical: bool = False,
) -> Blueprint:
    """The routes, to register on the app (``app.register_blueprint(stream_blueprint(...))``).

    Without ``notifications``, each request uses its app's
    (``init_app``), so one blueprint serves several apps. The options are
    :func:`notify_starlette.routes`'s and mean the same (docs/web.md):
    ``authenticate(request) -> principal | None``, ``authorize(principal,
    stream) -> bool``, ``authorize_send(principal, event) -> bool``, a
    ``?token=`` only with ``allow_query_token``, ``trusted_origins`` for
    cross-site posts, ``heartbeat`` seconds (0: none), the ``retry_ms``
    hint, ``send_timeout`` for one write (None: no bound), ``max_pending``
    messages a client may lag, ``named_events=False`` for frames that
    ``EventSource.onmessage`` receives, and ``allow_critical=True`` to let
    ``POST events`` carry ``"critical": true`` (refused by default).
    """
    options = WebOptions(
        authenticate=authenticate,
        authorize=authorize,
        authorize_send=authorize_send,
        allow_query_token=allow_query_token,
        trusted_origins=tuple(trusted_origins),
        heartbeat=heartbeat,
        retry_ms=retry_ms,
        send_timeout=send_timeout,
        max_pending=max_pending,
        named_events=named_events,
        allow_critical=allow_critical,
    )
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix)
    protocols: weakref.WeakKeyDictionary[Notifications, WebProtocol] = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    def protocol() -> WebProtocol:
        found = notifications if notifications is not None else notifications_of_current_app()
        with lock:
            made = protocols.get(found)
            if made is None:
                made = protocols[found] = WebProtocol(found, options)
            return made

    def stream(hub_id: str | None) -> Response:
        found = protocol()
        result = found.run(found.stream(_incoming(), hub_id))
        if isinstance(result, Reply):
            return _response(result)
        # Bounds each write: a client that stops reading fails it, and the server drops it.
        client = _client_socket(request.environ) if send_timeout is not None else None
        response = Response(
            stream_with_context(_bounded(result, client, send_timeout)),
            headers=EventStream.headers,
            direct_passthrough=True,
        )
        # A response whose body never starts (HEAD, a client gone at once) still lets go.
        response.call_on_close(result.close)
        return response

    def answer(hub_id: str | None = None, *, sending: bool = False) -> Response:
        found = protocol()
        steps = found.send(_incoming()) if sending else found.history(_incoming(), hub_id)
        return _response(found.run(steps))

    # OPTIONS too is the protocol's (below), not Flask's automatic answer.
    own = {"provide_automatic_options": False}
    blueprint.add_url_rule("/me/stream", "my_stream", lambda: stream(None), **own)
    blueprint.add_url_rule("/me/events", "my_events", lambda: answer(None), **own)
    blueprint.add_url_rule("/events", "send", lambda: answer(sending=True), methods=["POST"], **own)
    blueprint.add_url_rule("/<hub_id>/stream", "hub_stream", stream, **own)
    blueprint.add_url_rule("/<hub_id>/events", "history", answer, **own)
    add_inbox_routes(blueprint, protocol, _incoming, _response)  # me/inbox..., me/preferences
    # Any other method, or a path that is no route: JSON answers too, as on every adapter.
    for number, (path, method) in enumerate(ROUTES):
        _any_method(
            blueprint,
            path.replace("{hub_id}", "<hub_id>"),
            f"other_method_{number}",
            lambda method=method, **_: _response(other_method(request.method, method)),
        )
    _any_method(blueprint, "/", "no_route", lambda: _response(no_such_route()))
    _any_method(blueprint, "/<path:rest>", "no_such_route", lambda rest: _response(no_such_route()))
    return blueprint


def _any_method(blueprint: Blueprint, rule: str, endpoint: str, view: Any) -> None:
    """Route ``rule`` to ``view`` whatever the method (``add_url_rule`` wants them listed).

    Registered after the routes, so a route's own method still reaches it:
    werkzeug tries the rules of one path in order.
    """

    def register(state: BlueprintSetupState) -> None:
        path = rule
        if state.url_prefix is not None:
            path = "/".join((state.url_prefix.rstrip("/"), rule.lstrip("/")))
        name = f"{state.name_prefix}.{state.name}.{endpoint}".lstrip(".")
        made = state.app.url_rule_class(
            path, endpoint=name, methods=None, subdomain=state.subdomain
        )
        made.provide_automatic_options = False  # type: ignore[attr-defined]
        state.app.url_map.add(made)
        state.app.view_functions[name] = view

    blueprint.record(register)


def _bounded(
    body: EventStream, client: socket.socket | None, send_timeout: float | None
) -> Iterator[bytes]:
    """The stream's body, with a timeout on the client's socket for as long as it lasts."""
    previous = client.gettimeout() if client is not None else None
    try:
        if client is not None:
            client.settimeout(send_timeout)
        yield from body
    finally:
        body.close()
        if client is not None:
            with contextlib.suppress(OSError):  # the server may have closed it already
                client.settimeout(previous)
