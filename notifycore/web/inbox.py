"""The inbox and preference routes, written once for every web adapter.

=================================  ===============================================================
``GET me/inbox``                   ``{"items", "next", "unread"}``: a page, newest first
                                   (``?before=<cursor>&limit=<1..200>&archived=true``)
``GET me/inbox/unread``            ``{"unread": n}``
``POST me/inbox/read``             ``{"ids": [...]}``, or ``{"all": true, "up_to": <cursor>}``
``POST me/inbox/archive``          ``{"ids": [...]}``
``GET me/preferences``             ``{"preferences", "defaults", "channels", "hubs"}``
``PUT me/preferences``             ``{"preferences": {topic: {channel: bool}}}``
=================================  ===============================================================

Each route is the signed-in user's own (401 without one): nobody reads or
changes another's inbox. Writes are JSON only (415) and refused cross-site
like ``POST events`` (403). The changes answer ``{"changed", "count",
"unread"}`` and are pushed on the user's stream (``docs/inbox.md``). Errors
are JSON: 400 ``bad_request``, 422 ``invalid_preferences``, 404
``not_found`` when the server keeps no inboxes, 503 ``unavailable``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from notifycore.backends.inboxes import InboxChange
from notifycore.errors import (
    BackendError,
    ConfigurationError,
    InvalidInboxRequest,
    InvalidPreferences,
)
from notifycore.inbox import MAX_LIST, Inbox
from notifycore.preferences import INBOX_CHANNEL, hub_topic
from notifycore.web.access import is_json, principal_id
from notifycore.web.calls import Call, Steps
from notifycore.web.protocol import JSON, Refusal, Reply

if TYPE_CHECKING:
    from notifycore.web.protocol import WebProtocol, WebRequest

__all__ = ["INBOX_ROUTES", "MAX_BODY", "InboxRoutes"]

#: The routes under an adapter's prefix, with the methods each answers.
INBOX_ROUTES: tuple[tuple[str, str], ...] = (
    ("/me/inbox", "GET"),
    ("/me/inbox/unread", "GET"),
    ("/me/inbox/read", "POST"),
    ("/me/inbox/archive", "POST"),
    ("/me/preferences", "GET, PUT"),
)
#: The largest request body of these routes, in bytes.
MAX_BODY = 64 * 1024
_NO_CACHE = {"Content-Type": JSON, "Cache-Control": "no-store"}


def _reply(status: int, payload: Any) -> Reply:
    return Reply(status, json.dumps(payload, separators=(",", ":")).encode(), _NO_CACHE)


def _changed(change: InboxChange) -> Reply:
    return _reply(
        200, {"changed": list(change.changed), "count": change.count, "unread": change.unread}
    )


class InboxRoutes:
    """The routes' steps for one :class:`~notifycore.web.protocol.WebProtocol` (its options,
    authentication and cross-site rules); drive them with its ``run`` or ``arun``."""

    def __init__(self, protocol: WebProtocol) -> None:
        self.protocol = protocol
        self.notifications = protocol.notifications

    # -- shared steps ------------------------------------------------------------------------

    def user(self, request: WebRequest) -> Steps[str]:
        principal = yield from self.protocol.principal(request)
        user = principal_id(principal)
        if user is None:
            raise Refusal(401, "unauthorized", "sign in to use your inbox")
        return user

    def call(self, function: Callable[..., Any], *args: Any) -> Steps[Any]:
        """``function(*args)`` off the event loop, its errors turned into JSON answers."""
        try:
            return (yield Call(function, args))
        except InvalidInboxRequest as exc:
            raise Refusal(400, "bad_request", str(exc)) from None
        except InvalidPreferences as exc:
            raise Refusal(422, "invalid_preferences", str(exc)) from None
        except ConfigurationError as exc:
            raise Refusal(404, "not_found", f"this server keeps no inboxes: {exc}") from None
        except BackendError as exc:
            raise Refusal(503, "unavailable", str(exc)) from None

    def inbox(self, request: WebRequest) -> Steps[Inbox]:
        user = yield from self.user(request)
        found: Inbox = yield from self.call(self.notifications.inbox, user)
        return found

    def body(self, request: WebRequest) -> Steps[dict[str, Any]]:
        """The JSON object a write carries; 403 cross-site, 415 not JSON, 400 malformed."""
        cross_site = self.protocol.cross_site(request)
        if cross_site is not None:
            raise Refusal(403, "forbidden", cross_site)
        if not is_json(request.headers.get("Content-Type")):
            raise Refusal(415, "unsupported_media_type", "send Content-Type: application/json")
        assert request.read_body is not None, "the adapter must give read_body"
        data: bytes = yield Call(request.read_body, (MAX_BODY,))
        if len(data) > MAX_BODY:
            raise Refusal(400, "bad_request", f"the body is over {MAX_BODY} bytes")
        try:
            parsed = json.loads(data)
        except (ValueError, RecursionError):
            raise Refusal(400, "bad_request", "the body is not valid JSON") from None
        if not isinstance(parsed, dict):
            raise Refusal(400, "bad_request", "the body is a JSON object")
        return parsed

    @staticmethod
    def ids(body: dict[str, Any]) -> list[str]:
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise Refusal(400, "bad_request", '"ids" is a non-empty list of item ids')
        return ids

    # -- the routes --------------------------------------------------------------------------

    def list(self, request: WebRequest) -> Steps[Reply]:
        """``GET me/inbox``."""
        inbox = yield from self.inbox(request)
        raw = request.query.get("limit") or "50"
        if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_LIST):
            raise Refusal(400, "bad_request", f"limit is an integer from 1 to {MAX_LIST}")
        archived = (request.query.get("archived") or "false").lower()
        if archived not in ("true", "false", "1", "0"):
            raise Refusal(400, "bad_request", "archived is true or false")
        before = request.query.get("before") or None

        def page() -> tuple[Any, int]:
            items = inbox.list(before=before, limit=int(raw), archived=archived in ("true", "1"))
            return items, inbox.unread_count()

        items, unread = yield from self.call(page)
        body = b"".join(
            (
                b'{"items":[',
                b",".join(item.to_json_bytes() for item in items),
                b'],"next":',
                json.dumps(items[-1].cursor if len(items) == int(raw) else None).encode(),
                b',"unread":%d}' % unread,
            )
        )
        return Reply(200, body, _NO_CACHE)

    def unread(self, request: WebRequest) -> Steps[Reply]:
        """``GET me/inbox/unread``."""
        inbox = yield from self.inbox(request)
        count = yield from self.call(inbox.unread_count)
        return _reply(200, {"unread": count})

    def read(self, request: WebRequest) -> Steps[Reply]:
        """``POST me/inbox/read``."""
        body = yield from self.body(request)
        inbox = yield from self.inbox(request)
        if body.get("all") is True:
            up_to = body.get("up_to")
            if up_to is not None and not isinstance(up_to, str):
                raise Refusal(400, "bad_request", '"up_to" is a cursor (a string)')
            change = yield from self.call(inbox.mark_all_read, up_to)
        elif "all" in body and body["all"] is not False:
            raise Refusal(400, "bad_request", '"all" is true or false')
        else:
            change = yield from self.call(inbox.mark_read, self.ids(body))
        return _changed(change)

    def archive(self, request: WebRequest) -> Steps[Reply]:
        """``POST me/inbox/archive``."""
        body = yield from self.body(request)
        inbox = yield from self.inbox(request)
        change = yield from self.call(inbox.archive, self.ids(body))
        return _changed(change)

    def preferences(self, request: WebRequest) -> Steps[Reply]:
        """``GET me/preferences``."""
        user = yield from self.user(request)
        found = yield from self.call(self.notifications.preferences, user)
        hubs = self.notifications.hubs.values()
        channels = {r.name for hub in hubs for r in hub.registrations} | {INBOX_CHANNEL}
        return _reply(
            200,
            {
                "preferences": found,
                "defaults": self.notifications.centre.defaults,
                "channels": sorted(channels),
                "hubs": sorted(hub_topic(hub.label) for hub in hubs),
            },
        )

    def set_preferences(self, request: WebRequest) -> Steps[Reply]:
        """``PUT me/preferences``."""
        body = yield from self.body(request)
        user = yield from self.user(request)
        if set(body) != {"preferences"}:
            raise Refusal(
                400, "bad_request", 'the body is {"preferences": {topic: {channel: bool}}}'
            )
        saved = yield from self.call(self.notifications.set_preferences, user, body["preferences"])
        return _reply(200, {"preferences": saved})

    def route(self, path: str, method: str) -> Callable[[WebRequest], Steps[Reply]] | None:
        """The steps for ``method`` on one of :data:`INBOX_ROUTES`; None for another method."""
        table: dict[tuple[str, str], Callable[[WebRequest], Steps[Reply]]] = {
            ("/me/inbox", "GET"): self.list,
            ("/me/inbox/unread", "GET"): self.unread,
            ("/me/inbox/read", "POST"): self.read,
            ("/me/inbox/archive", "POST"): self.archive,
            ("/me/preferences", "GET"): self.preferences,
            ("/me/preferences", "PUT"): self.set_preferences,
        }
        return table.get((path, "GET" if method.upper() == "HEAD" else method.upper()))
