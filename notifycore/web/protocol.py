"""The web protocol: every route's logic, written once for all web adapters.

An adapter (``notify_flask``, ``notify_starlette``) turns its framework's
request into a :class:`WebRequest`, drives a route's steps with
:meth:`WebProtocol.run` (sync) or :meth:`WebProtocol.arun` (async), and
turns what comes back — a :class:`Reply` or an :class:`EventStream` — into
its framework's response. So every adapter serves the same routes, JSON
replies, error codes, heartbeats and frames:

=========================  =======================================================
``GET {hub}/stream``       the hub's live stream (SSE); ``me/stream``: the user's own
``GET {hub}/events``       history as JSON; ``me/events``: the user's own
``POST events``            send an event (an ``application/json`` body); 202
=========================  =======================================================

Every answer other than a stream or a 202 is JSON ``{"error": code,
"message": ...}``: 400 ``bad_request``, 401 ``unauthorized`` (with
``WWW-Authenticate: Bearer``), 403 ``forbidden``, 404 ``not_found`` (no such
hub, or no such route), 405 ``method_not_allowed`` (any other method but
OPTIONS, which a route answers 204 with ``Allow``), 415
``unsupported_media_type``, 422 ``invalid_event`` (with ``field``), 503
``unavailable`` (the backend cannot be reached) or ``shutting_down``, and
500 ``consumer_failed`` only under the ``raise`` error policy.
"""

from __future__ import annotations

import functools
import json
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from notifycore.errors import (
    BackendError,
    ConsumerError,
    InvalidEvent,
    InvalidStreamId,
    NotifycoreError,
    UnknownHub,
)
from notifycore.preferences import RESERVED_PREFIXES, is_critical, is_reserved_type
from notifycore.web.access import (
    Access,
    Authenticate,
    Authorize,
    AuthorizeSend,
    client_stream_id,
    cross_site_refusal,
    is_json,
    resume_id,
    stream_for_hub,
)
from notifycore.web.calls import Call, Steps, ToThread, arun, run
from notifycore.web.sse import HEADERS, HEARTBEAT, FrameCache, reset_frame, retry_frame

if TYPE_CHECKING:
    from notifycore import Notifications
    from notifycore.backends.base import Backend, StreamRead
    from notifycore.event import Event
    from notifycore.fanout import Subscription
    from notifycore.result import SendResult

__all__ = [
    "JSON",
    "MAX_HISTORY",
    "ROUTES",
    "EventStream",
    "ProcessState",
    "Refusal",
    "Reply",
    "WebOptions",
    "WebProtocol",
    "WebRequest",
    "error_reply",
    "method_not_allowed",
    "no_such_route",
    "other_method",
    "process_state",
    "small_int",
]

T = TypeVar("T")

JSON = "application/json"
#: Largest ``limit`` of ``GET {hub}/events``, and its default.
MAX_HISTORY = 1000
#: A stream waits at most this long for a batch, so a lost wake-up can never stall it.
WAKE_SECONDS = 30.0
#: Every route under an adapter's prefix, with its method (``{hub_id}``: a hub label or id).
ROUTES: tuple[tuple[str, str], ...] = (
    ("/me/stream", "GET"),
    ("/me/events", "GET"),
    ("/events", "POST"),
    ("/{hub_id}/stream", "GET"),
    ("/{hub_id}/events", "GET"),
)


# -- replies ---------------------------------------------------------------------------------

#: ``json.dumps(payload, separators=(",", ":"))`` without making an encoder per reply (as
#: ``json.dumps`` does for any argument but the defaults).
_encode_json = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True)
class Reply:
    """A finished answer: status, JSON body, headers (``Content-Type`` among them)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        # ASCII-safe: a lone surrogate from a hostile body is escaped, never an encoding error.
        body = _encode_json(payload).encode()
        return cls(status, body, {"Content-Type": JSON, **(headers or {})})


def error_reply(status: int, code: str, message: str, **extra: Any) -> Reply:
    """``{"error": code, "message": message, **extra}``; a 401 says it wants a Bearer token."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Reply.json(status, {"error": code, "message": message, **extra}, headers)


def _allow(method: str) -> str:
    """The ``Allow`` header of a route answering ``method`` (a GET route answers HEAD too)."""
    return "GET, HEAD, OPTIONS" if method == "GET" else f"{method}, OPTIONS"


def method_not_allowed(allowed: str) -> Reply:
    """405 for a route asked with another method than ``allowed``."""
    return Reply.json(
        405,
        {"error": "method_not_allowed", "message": f"this route answers {allowed} only"},
        {"Allow": _allow(allowed)},
    )


def other_method(method: str, allowed: str) -> Reply:
    """A route that answers ``allowed``, asked with ``method``: OPTIONS says so (204), else 405.

    Every method, not only the usual ones, so no framework's own text or HTML
    error page ever answers under the prefix.
    """
    if method.upper() == "OPTIONS":
        return Reply(204, b"", {"Allow": _allow(allowed)})
    return method_not_allowed(allowed)


def no_such_route() -> Reply:
    """404 for a path under the adapter's prefix that is none of :data:`ROUTES`."""
    return error_reply(404, "not_found", "no such route")


class Refusal(NotifycoreError):
    """Ends a route with an error answer (raised inside its steps, turned into :attr:`reply`)."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code = code
        self.message = message
        self.reply = error_reply(status, code, message, **extra)


def small_int(raw: str, most: int) -> int | None:
    """``raw`` (a query value) as an integer from 1 to ``most``; None when it is not one.

    Only ASCII digits, and never more of them than ``most`` has (leading zeros aside):
    ``int()`` of thousands of digits raises, and costs time, before any range check."""
    digits = raw.lstrip("0") if raw.isascii() and raw.isdigit() else ""
    if not digits or len(digits) > len(str(most)):
        return None
    number = int(digits)
    return number if number <= most else None


def _unavailable(exc: BackendError) -> Refusal:
    return Refusal(503, "unavailable", str(exc))


def _invalid(exc: InvalidEvent) -> Refusal:
    return Refusal(422, "invalid_event", exc.message, field=exc.field)


# -- options and per-process state -----------------------------------------------------------


@dataclass(frozen=True)
class WebOptions:
    """What an adapter's ``stream_blueprint(...)`` or ``routes(...)`` was given; checked once."""

    authenticate: Authenticate | None = None
    authorize: Authorize | None = None
    authorize_send: AuthorizeSend | None = None
    #: Hand ``?token=`` to ``authenticate`` (else it sees the request without it).
    allow_query_token: bool = False
    #: Other origins whose pages may post with the browser's cookies.
    trusted_origins: tuple[str, ...] = ()
    #: Seconds between heartbeat comments on an idle stream (0: none).
    heartbeat: float = 15.0
    #: The ``retry:`` hint that opens every stream.
    retry_ms: int = 3000
    #: Seconds one write to a client may take before it is dropped (None: no bound).
    send_timeout: float | None = 10.0
    #: Messages a client may lag before it is disconnected (None: the fan-out's).
    max_pending: int | None = None
    #: False: frames carry no ``event:`` field, so ``EventSource.onmessage`` gets them.
    named_events: bool = True
    #: True: ``POST events`` accepts ``"critical": true`` (which bypasses the recipients'
    #: preferences) and leaves the decision to ``authorize_send``; False: refused with 403.
    allow_critical: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "trusted_origins", tuple(self.trusted_origins))
        if self.heartbeat < 0:
            raise ValueError("heartbeat must be >= 0 (0 disables it)")
        if self.retry_ms < 0:
            raise ValueError("retry_ms must be >= 0")
        if self.send_timeout is not None and self.send_timeout <= 0:
            raise ValueError("send_timeout must be > 0 or None")
        if self.max_pending is not None and self.max_pending < 1:
            raise ValueError("max_pending must be >= 1")


class ProcessState:
    """Per ``Notifications``, shared by every adapter in the process: frames and shutdown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: FrameCache | None = None
        self._frames_of: weakref.ref[Backend] | None = None
        #: Set once the server began shutting down: new streams are refused with 503.
        self.closing = False

    def frames(self, backend: Backend) -> FrameCache:
        """The frame cache for ``backend``'s ids (a new backend restarts ids, so a new cache)."""
        with self._lock:
            if self._frames is None or self._frames_of is None or self._frames_of() is not backend:
                self._frames = FrameCache()
                self._frames_of = weakref.ref(backend)
            return self._frames


_states: weakref.WeakKeyDictionary[Notifications, ProcessState] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def process_state(notifications: Notifications) -> ProcessState:
    """The state every router, blueprint and lifespan made for ``notifications`` shares."""
    with _states_lock:
        state = _states.get(notifications)
        if state is None:
            state = _states[notifications] = ProcessState()
        return state


# -- requests --------------------------------------------------------------------------------


class Lookup(Protocol):
    """Headers or query parameters: ``get(name)`` (case-insensitive for headers) and ``in``."""

    def get(self, key: str, /) -> str | None: ...

    def __contains__(self, key: str, /) -> bool: ...


@dataclass(frozen=True)
class WebRequest:
    """What the protocol reads of a request; an adapter fills it from its framework's."""

    #: The framework's request, handed to the app's ``authenticate``.
    native: Any
    #: werkzeug's and Starlette's headers both have a case-insensitive ``get``.
    headers: Lookup
    query: Lookup
    #: The ``Host`` the request was sent to (the cross-site check compares ``Origin`` with it).
    host: str | None = None
    #: The scheme as the app sees it (``http``, ``https``, ``ws``, ``wss``), after the
    #: framework applied any trusted proxy headers; None: unknown, ``Origin``'s is not compared.
    scheme: str | None = None
    #: A copy of ``native`` without ``?token=``, for ``authenticate`` unless query tokens are allowed.
    without_query_token: Callable[[Any], Any] | None = None
    #: ``read_body(limit)``: the body, read no further than one byte past ``limit``; may be async.
    read_body: Callable[[int], bytes | Awaitable[bytes]] | None = None


# -- streams ---------------------------------------------------------------------------------


class EventStream:
    """The body of one SSE response: iterate it (sync or async) and write what it gives.

    A ``retry:`` hint first, then one chunk of cached frames per batch (a
    ``reset`` frame first when events were missed), :data:`HEARTBEAT` when
    idle for ``heartbeat`` seconds. It ends when the fan-out ends the
    subscription (a slow client, shutdown): the client resumes with
    ``Last-Event-ID``.
    """

    headers = HEADERS

    def __init__(
        self, protocol: WebProtocol, stream: str, subscription: Subscription, after: str | None
    ) -> None:
        self.protocol = protocol
        self.stream = stream
        self.subscription = subscription
        #: The id the client has everything up to: a reset frame carries it.
        self.position = after
        self._frames = protocol.state.frames(protocol.notifications.fanout.backend)
        self._named = protocol.options.named_events
        heartbeat = protocol.options.heartbeat
        #: Seconds a read waits for a batch before the stream writes a heartbeat.
        self.wait = heartbeat if heartbeat > 0 else WAKE_SECONDS
        self._idle = HEARTBEAT if heartbeat > 0 else b""

    def close(self) -> None:
        self.subscription.close()

    def opening(self) -> bytes:
        return retry_frame(self.protocol.options.retry_ms)

    def chunk(self, batch: StreamRead | None) -> bytes | None:
        """What to write for what the subscription gave; None once it ended."""
        return self.chunk_run(None if batch is None else (batch,))

    def chunk_run(self, batches: Sequence[StreamRead] | None) -> bytes | None:
        """What to write for the batches the subscription gave, in one go; None once it ended."""
        if self.subscription.closed:
            return None
        if batches is None:
            return self._idle
        frames = self._frames
        parts: list[bytes] = []
        for batch in batches:
            if batch.reset:
                parts.append(reset_frame(self.stream, self.position))
            messages = batch.messages
            if messages:
                parts.append(frames.batch(self.stream, batch, named=self._named))
                self.position = messages[-1].id
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _ended(self) -> Steps[None]:
        reason = self.subscription.closed_reason
        if reason not in (None, "closed"):  # the server ended it: slow, shutdown
            yield from self.protocol.report_disconnect(reason, "sse")

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield self.opening()
            while (chunk := self.chunk(self.subscription.get(self.wait))) is not None:
                if chunk:
                    yield chunk
            run(self._ended())
        finally:
            self.close()

    async def next_chunk(self) -> bytes | None:
        """The next bytes to write (frames, or a heartbeat); None once the stream ended.

        For an async adapter that writes the stream itself: :meth:`opening`
        first, then each chunk, and :meth:`close` when done.
        """
        while (chunk := self.chunk_run(await self.subscription.aget_run(self.wait))) is not None:
            if chunk:
                return chunk
        await self.protocol.arun(self._ended())
        return None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield self.opening()
            while (chunk := await self.next_chunk()) is not None:
                yield chunk
        finally:
            self.close()


# -- the routes ------------------------------------------------------------------------------


class WebProtocol:
    """Every route's logic for one ``Notifications`` and one set of :class:`WebOptions`.

    The route methods (:meth:`stream`, :meth:`history`, :meth:`send`) return
    steps; :meth:`run` and :meth:`arun` drive them and return their result or
    the :class:`Reply` of a :class:`Refusal`. ``to_thread`` is how
    :meth:`arun` runs a blocking call (default: the loop's executor).
    """

    def __init__(
        self,
        notifications: Notifications,
        options: WebOptions | None = None,
        *,
        to_thread: ToThread | None = None,
    ) -> None:
        self.notifications = notifications
        self.options = options = options or WebOptions()
        self.access = Access(
            notifications, options.authenticate, options.authorize, options.authorize_send
        )
        self.state = process_state(notifications)
        self.to_thread = to_thread

    def run(self, steps: Steps[T]) -> T | Reply:
        """Drive ``steps`` in this thread: their result, or the refusal's reply."""
        try:
            return run(steps)
        except Refusal as refusal:
            return refusal.reply

    async def arun(self, steps: Steps[T]) -> T | Reply:
        """Drive ``steps`` without blocking the loop: their result, or the refusal's reply."""
        try:
            return await arun(steps, self.to_thread)
        except Refusal as refusal:
            return refusal.reply

    # -- who, and what they may read ---------------------------------------------------------

    def principal(self, request: WebRequest) -> Steps[Any]:
        """The app's ``authenticate``, handed the request without ``?token=`` unless allowed."""
        target = request.native
        hide = not self.options.allow_query_token and "token" in request.query
        if hide and request.without_query_token is not None:
            target = request.without_query_token(target)
        return (yield from self.access.principal_steps(target))

    def refusal(self, principal: Any, message: str) -> Refusal:
        """401 for an anonymous caller, 403 for a known one who may not."""
        if principal is None:
            return Refusal(401, "unauthorized", "authentication required")
        return Refusal(403, "forbidden", message)

    def readable(self, request: WebRequest, hub_id: str | None) -> Steps[str]:
        """The stream the request may read: the hub's, or without ``hub_id`` the user's own."""
        principal = yield from self.principal(request)
        if hub_id is None:
            stream = self.access.user_stream(principal)
            if stream is None:
                raise Refusal(401, "unauthorized", "sign in to read your own stream")
        else:
            try:
                stream = stream_for_hub(self.notifications, hub_id)
            except UnknownHub as exc:
                raise Refusal(404, "not_found", str(exc)) from None
        if not (yield from self.access.allows_steps(principal, stream)):
            raise self.refusal(principal, f"not allowed to read {stream}")
        return stream

    # -- GET {hub}/stream, me/stream ---------------------------------------------------------

    def subscribe(self, stream: str, after: str | None, what: str = "after") -> Steps[Subscription]:
        """A fan-out subscription from ``after``: 400 for a malformed id, 503 backend down."""
        fanout = self.notifications.fanout
        subscribe = functools.partial(fanout.subscribe, max_pending=self.options.max_pending)
        try:
            subscription: Subscription = yield Call(
                subscribe, (stream, after), discard=_close_subscription
            )
        except InvalidStreamId as exc:
            raise Refusal(400, "bad_request", f"malformed {what}: {exc}") from None
        except BackendError as exc:
            raise _unavailable(exc) from None
        return subscription

    def stream(self, request: WebRequest, hub_id: str | None) -> Steps[EventStream]:
        stream = yield from self.readable(request, hub_id)
        if self.state.closing:
            raise Refusal(503, "shutting_down", "the server is shutting down; reconnect")
        try:
            after = resume_id(
                request.headers.get("Last-Event-ID"), request.query.get("lastEventId")
            )
        except InvalidStreamId as exc:
            raise Refusal(400, "bad_request", f"malformed Last-Event-ID: {exc}") from None
        subscription = yield from self.subscribe(stream, after, "Last-Event-ID")
        return EventStream(self, stream, subscription, after)

    def report_disconnect(self, reason: str, transport: str) -> Steps[None]:
        """A stream the server ended (``slow``, ``shutdown``, ``timeout``), as a metric."""
        plugins = self.notifications.plugins
        if plugins.implements("notifycore_metric"):
            tags = {"reason": reason, "transport": transport}
            yield Call(plugins.metric, ("streams.disconnected", 1, tags))

    # -- GET {hub}/events, me/events ---------------------------------------------------------

    def history(self, request: WebRequest, hub_id: str | None) -> Steps[Reply]:
        """``{"stream", "events": [{"id", "event"}], "reset"}``: the stored JSON embedded as is."""
        stream = yield from self.readable(request, hub_id)
        try:
            since = client_stream_id(request.query.get("since"), "since")
        except InvalidStreamId as exc:
            raise Refusal(400, "bad_request", f"malformed since: {exc}") from None
        raw = request.query.get("limit")
        limit = small_int(str(MAX_HISTORY) if raw is None else raw, MAX_HISTORY)
        if limit is None:
            raise Refusal(400, "bad_request", f"limit must be an integer from 1 to {MAX_HISTORY}")
        read_ = functools.partial(self.notifications.backend.read, limit=limit)
        try:
            read: StreamRead = yield Call(read_, (stream, since))
        except InvalidStreamId as exc:
            raise Refusal(400, "bad_request", f"malformed since: {exc}") from None
        except BackendError as exc:
            raise _unavailable(exc) from None
        # The stored event JSON goes out as it is: parsed and serialised again by no one.
        items = b",".join(
            b'{"id":' + json.dumps(m.id).encode() + b',"event":' + m.data + b"}"
            for m in read.messages
        )
        body = b"".join(
            (
                b'{"stream":',
                json.dumps(stream).encode(),
                b',"events":[',
                items,
                b'],"reset":',
                b"true" if read.reset else b"false",
                b"}",
            )
        )
        return Reply(200, body, {"Content-Type": JSON, "Cache-Control": "no-cache"})

    # -- POST events -------------------------------------------------------------------------

    def cross_site(self, request: WebRequest) -> str | None:
        """Why a request riding on the browser's credentials is refused as cross-site, or None."""
        return cross_site_refusal(
            authorization=request.headers.get("Authorization"),
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            host=request.host,
            trusted_origins=self.options.trusted_origins,
            scheme=request.scheme,
            cookie=request.headers.get("Cookie"),
            query_token=self.options.allow_query_token and bool(request.query.get("token")),
        )

    def check_sendable(self, event: Event) -> None:
        """Refuse what no web client may send, before anyone is asked: a reserved event type
        (``inbox.*``, ``notifycore.*``: notifycore's own change and job events), and a
        ``critical`` event unless the app allows them (``allow_critical``)."""
        if is_reserved_type(event.event_type):
            raise Refusal(
                403,
                "forbidden",
                f"event type {event.event_type[:100]!r} is reserved: types starting with "
                + " or ".join(repr(p) for p in RESERVED_PREFIXES)
                + " are notifycore's own",
            )
        if is_critical(event) and not self.options.allow_critical:
            raise Refusal(
                403,
                "forbidden",
                "critical events (which bypass the recipients' preferences) are not "
                "accepted from web clients on this server",
            )

    def send(self, request: WebRequest) -> Steps[Reply]:
        """Send the body's event on the principal's behalf: 202 with what happened to it."""
        cross_site = self.cross_site(request)
        if cross_site is not None:
            raise Refusal(403, "forbidden", cross_site)
        if not is_json(request.headers.get("Content-Type")):
            raise Refusal(
                415, "unsupported_media_type", "send the event as Content-Type: application/json"
            )
        assert request.read_body is not None, "the adapter must give read_body"
        principal = yield from self.principal(request)
        limit: int = self.notifications.settings["MAX_EVENT_SIZE"]
        data: bytes = yield Call(request.read_body, (limit,))
        try:
            if len(data) > limit:  # only limit + 1 bytes were read: the size is unknown
                raise InvalidEvent("event", f"is over the limit of {limit} bytes")
            event = self.notifications.coerce_event(data)
            self.check_sendable(event)
            allowed = yield from self.access.sendable_steps(principal, event)
        except InvalidEvent as exc:  # the sender it sets is checked like any field
            raise _invalid(exc) from None
        if allowed is None:
            raise self.refusal(principal, "not allowed to send this event")
        notifications = self.notifications
        # Async servers await asend() on the loop when nothing it runs can block it, and
        # run send() in a worker thread otherwise (sync consumers: SMTP, logs...).
        on_loop = notifications.asend if notifications.delivery.awaitable() else None
        try:
            result: SendResult = yield Call(notifications.send, (allowed,), on_loop=on_loop)
        except InvalidEvent as exc:
            raise _invalid(exc) from None
        except BackendError as exc:
            raise _unavailable(exc) from None
        except ConsumerError as exc:
            # The raise policy: the event went out, one of the app's consumers failed.
            raise Refusal(500, "consumer_failed", str(exc), **sent(exc.result)) from None
        return Reply.json(202, sent(result))


def sent(result: SendResult) -> dict[str, Any]:
    """What ``POST events`` answers about a sent event."""
    return {
        "event_id": result.event.event_id,
        "sender": result.event.sender,
        "hubs": result.hubs,
        "outcomes": [
            {"hub": o.hub, "consumer": o.consumer, "status": str(o.status)} for o in result.outcomes
        ],
    }


def _close_subscription(subscription: Subscription) -> None:
    subscription.close()
