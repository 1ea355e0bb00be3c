"""Who may read which stream and who may send; the request facts those decisions read.

Reading: a signed-in user may always read their own stream (``user:<id>``).
Any other stream: with an ``authorize(principal, stream)`` callable
configured, it decides; otherwise the ``notifycore_authorize`` hook decides
if a plugin answers; otherwise a stream is open while no authentication is
configured, and closed once one is.

Sending (``POST /events``): ``authorize_send(principal, event)`` (a callable,
else the ``notifycore_authorize_send`` hook) sees the event with the sender
the client claimed and decides; without either, the older (deprecated)
pseudo-stream ``"send"`` is asked through ``authorize``/``notifycore_authorize``,
and the event's ``sender`` becomes the signed-in principal's id (none, when
the principal has no id), whatever the client wrote.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

from notifycore.backends.base import MAX_STREAM_ID_LENGTH
from notifycore.consumers import user_stream
from notifycore.errors import InvalidStreamId
from notifycore.web.calls import Call, FirstAnswer, Steps, ToThread, arun, run

if TYPE_CHECKING:
    from notifycore import Notifications
    from notifycore.event import Event

__all__ = [
    "SEND_PERMISSION",
    "Access",
    "bearer_token",
    "client_stream_id",
    "cross_site_refusal",
    "is_json",
    "principal_id",
    "resume_id",
    "stream_for_hub",
]

#: ``authenticate(request) -> principal | None``; may be ``async def``.
Authenticate = Callable[[Any], Any]
#: ``authorize(principal, stream) -> bool``; may be ``async def``.
Authorize = Callable[[Any, str], "bool | Awaitable[bool]"]
#: ``authorize_send(principal, event) -> bool``; may be ``async def``.
AuthorizeSend = Callable[[Any, "Event"], "bool | Awaitable[bool]"]

#: The pseudo-stream ``authorize`` is asked about for sending, when no ``authorize_send`` decides.
SEND_PERMISSION = "send"


def stream_for_hub(notifications: Notifications, hub_id: str) -> str:
    """The stream a hub pushes to (its ``hub_id``); :class:`UnknownHub` for no such hub."""
    return notifications.get_hub(hub_id).hub_id


def _id_text(value: Any) -> str | None:
    """An id as text; None for no id (None, a bool, an empty or blank string)."""
    if value is None or isinstance(value, bool):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def principal_id(principal: Any) -> str | None:
    """A principal's user id as text, the same for its own stream and as the sender.

    A string is the id itself, so is an ``int`` or a :class:`~uuid.UUID`
    (``session["user_id"] = 42`` gives ``"42"``); a mapping's ``"id"`` key,
    or else an object's ``id`` attribute, is turned into text the same way.
    None when there is no id (None, a bool, an empty id, an object without one).
    """
    if principal is None or isinstance(principal, bool):
        return None
    if isinstance(principal, (str, int, UUID)):
        return _id_text(principal)
    if isinstance(principal, Mapping):
        return _id_text(principal.get("id"))
    return _id_text(getattr(principal, "id", None))


def client_stream_id(value: str | None, what: str = "stream id") -> str | None:
    """A stream id from a client (``since``, ``after``...), stripped; None when empty.

    Longer than ``MAX_STREAM_ID_LENGTH``: :class:`InvalidStreamId`, before any backend parses it.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_STREAM_ID_LENGTH:
        raise InvalidStreamId(f"{what} is longer than {MAX_STREAM_ID_LENGTH} characters")
    return value


def resume_id(header: str | None, query: str | None) -> str | None:
    """The id to resume after: the ``Last-Event-ID`` header, else the ``lastEventId`` query value.

    :class:`InvalidStreamId` when it is longer than any backend's ids.
    """
    if header is not None and header.strip():
        return client_stream_id(header, "Last-Event-ID")
    return client_stream_id(query, "lastEventId")


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def is_json(content_type: str | None) -> bool:
    """True for a ``Content-Type`` of ``application/json`` (parameters such as charset allowed)."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    return media_type == "application/json"


_DEFAULT_PORTS = {"http": "80", "https": "443"}
#: A WebSocket handshake's scheme, as the page's origin has it.
_WEB_SCHEMES = {"ws": "http", "wss": "https"}


def _host(netloc: str, scheme: str | None = None) -> str:
    """``host[:port]`` in lower case, without the scheme's default port."""
    host, _, port = netloc.strip().lower().rpartition(":")
    if not host or "]" in port:  # no port, or an IPv6 address without one
        return netloc.strip().lower()
    if port in ((_DEFAULT_PORTS[scheme],) if scheme in _DEFAULT_PORTS else ("80", "443")):
        return host
    return f"{host}:{port}"


def _origin(value: str) -> str:
    """``scheme://host[:port]`` of an origin, lower case, no trailing slash."""
    parts = urlsplit(value.strip().lower())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else value.strip()


def _same_origin(origin: str, host: str | None, scheme: str | None) -> bool:
    """Whether ``origin`` is the server's own: its scheme (when known) and ``host``."""
    parts = urlsplit(origin.strip())
    theirs = parts.scheme.lower()
    if not (theirs and parts.netloc and host):
        return False
    if scheme is None:  # an adapter that cannot say: the host alone
        return _host(parts.netloc, theirs) == _host(host)
    ours = scheme.strip().lower()
    ours = _WEB_SCHEMES.get(ours, ours)
    return theirs == ours and _host(parts.netloc, theirs) == _host(host, ours)


def cross_site_refusal(
    *,
    authorization: str | None,
    origin: str | None,
    fetch_site: str | None,
    host: str | None,
    trusted_origins: Iterable[str] = (),
    scheme: str | None = None,
    cookie: str | None = None,
    query_token: bool = False,
) -> str | None:
    """Why a request must be refused as a cross-site request; None when it may go on.

    A request from another site (``Sec-Fetch-Site: cross-site``, or an
    ``Origin`` that is neither the server's own — its ``scheme``, as the app
    sees it, and ``host`` — nor one of ``trusted_origins``) may be riding on
    the browser's cookies or HTTP credentials, so it is refused. Only one
    that brings its own credential (an ``Authorization: Bearer`` token, or
    an allowed ``?token=``: ``query_token``) **and no cookie at all** is not
    at risk: a browser never adds such a token by itself, but with a cookie
    beside it nobody can tell which of the two ``authenticate`` went by. A
    request with neither header (curl, a server-side client) goes on.
    """
    if origin is not None and _origin(origin) in {_origin(o) for o in trusted_origins}:
        return None
    own_credential = bearer_token(authorization) is not None or query_token
    if own_credential and not (cookie and cookie.strip()):
        return None
    if fetch_site is not None and fetch_site.strip().lower() == "cross-site":
        return "cross-site requests are refused"
    if origin is None or _same_origin(origin, host, scheme):
        return None
    return f"requests from origin {origin.strip()[:100]!r} are refused"


class Access:
    """Who may read which stream and who may send, for one web app.

    Each decision has a sync face (``allows``...) and an async one
    (``aallows``...), both running the same steps (:mod:`notifycore.web.calls`):
    the async face awaits an ``async def`` callable or hook and runs a sync one
    in a worker thread.
    """

    def __init__(
        self,
        notifications: Notifications,
        authenticate: Authenticate | None = None,
        authorize: Authorize | None = None,
        authorize_send: AuthorizeSend | None = None,
    ) -> None:
        self.notifications = notifications
        self.authenticate = authenticate
        self.authorize = authorize
        self.authorize_send = authorize_send

    @property
    def configured(self) -> bool:
        """True once any authentication or authorisation is set up: then streams are closed by default."""
        plugins = self.notifications.plugins
        return (
            self.authenticate is not None
            or self.authorize is not None
            or self.authorize_send is not None
            or plugins.implements("notifycore_authorize")
            or plugins.implements("notifycore_authorize_send")
        )

    # -- the faces ---------------------------------------------------------------------------

    def principal(self, request: Any) -> Any:
        """The app's ``authenticate(request)``, or None without one."""
        return run(self.principal_steps(request))

    async def aprincipal(self, request: Any, to_thread: ToThread | None = None) -> Any:
        return await arun(self.principal_steps(request), to_thread)

    def allows(self, principal: Any, stream: str) -> bool:
        """May ``principal`` read ``stream``? Its owner always may read a user stream."""
        return run(self.allows_steps(principal, stream))

    async def aallows(self, principal: Any, stream: str, to_thread: ToThread | None = None) -> bool:
        return await arun(self.allows_steps(principal, stream), to_thread)

    def sendable(self, principal: Any, event: Event) -> Event | None:
        """The event to send on ``principal``'s behalf, or None when it may not send it."""
        return run(self.sendable_steps(principal, event))

    async def asendable(
        self, principal: Any, event: Event, to_thread: ToThread | None = None
    ) -> Event | None:
        return await arun(self.sendable_steps(principal, event), to_thread)

    def user_stream(self, principal: Any) -> str | None:
        """The signed-in user's own stream, None when nobody is signed in."""
        user = principal_id(principal)
        return None if user is None else user_stream(user)

    # -- the decisions, once -----------------------------------------------------------------

    def principal_steps(self, request: Any) -> Steps[Any]:
        if self.authenticate is None:
            return None
        return (yield Call(self.authenticate, (request,)))

    def allows_steps(self, principal: Any, stream: str) -> Steps[bool]:
        user = principal_id(principal)
        if user is not None and stream == user_stream(user):
            return True
        if self.authorize is not None:
            return bool((yield Call(self.authorize, (principal, stream))))
        answer = yield from self._ask("notifycore_authorize", principal=principal, stream=stream)
        return not self.configured if answer is None else answer

    def sendable_steps(self, principal: Any, event: Event) -> Steps[Event | None]:
        """A missing ``sender`` is the principal's id.

        ``authorize_send`` (or the ``notifycore_authorize_send`` hook) sees
        the sender the client claimed and decides. On the older ``"send"``
        path the sender is always the signed-in principal's id — none at all
        when the principal has no id — whatever the client claimed. With
        nothing configured, the event goes as written.
        """
        user = principal_id(principal)
        claimed = event if user is None or event.sender else event.replace(sender=user)
        if self.authorize_send is not None:
            allowed = yield Call(self.authorize_send, (principal, claimed))
            return claimed if allowed else None
        if self.authorize is not None:
            allowed = bool((yield Call(self.authorize, (principal, SEND_PERMISSION))))
        else:
            answer = yield from self._ask(
                "notifycore_authorize_send", principal=principal, event=claimed
            )
            if answer is not None:
                return claimed if answer else None
            answer = yield from self._ask(
                "notifycore_authorize", principal=principal, stream=SEND_PERMISSION
            )
            if answer is None:  # nobody decides: open only while nothing is configured
                if self.configured:
                    return None
                if user is None:  # and nobody signed in: the event goes as written
                    return claimed
            allowed = True if answer is None else answer
        if not allowed:
            return None
        # The "send" permission cannot see the event: it goes as its principal, or as no one.
        sender = user or ""
        return claimed if claimed.sender == sender else claimed.replace(sender=sender)

    def _ask(self, hook: str, **kwargs: Any) -> Steps[bool | None]:
        """A ``firstresult`` hook's answer; None when no plugin implements it or decides."""
        plugins = self.notifications.plugins
        if not plugins.implements(hook):
            return None
        answer = yield FirstAnswer(plugins, hook, kwargs)
        return None if answer is None else bool(answer)
