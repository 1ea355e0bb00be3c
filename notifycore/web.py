"""What the Flask and Starlette adapters share: stream names, access decisions, resume ids.

Access: with an ``authorize(principal, stream)`` callable configured, it
decides. Otherwise the ``notifycore_authorize`` hook decides if a plugin
answers. Otherwise a stream is open when no authentication is configured,
and closed once one is: with auth configured, nothing is readable by default
— except a signed-in user's own stream (``user:<id>``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from notifycore.consumers import user_stream
from notifycore.errors import UnknownHub

if TYPE_CHECKING:
    from notifycore.app import Notifications

__all__ = ["Access", "principal_id", "resume_id", "stream_for_hub", "unknown_hub_message"]

Authenticate = Callable[[Any], Any]
Authorize = Callable[[Any, str], bool]


def stream_for_hub(notifications: Notifications, hub_id: str) -> str:
    """The stream a hub pushes to (its ``hub_id``); :class:`UnknownHub` for no such hub."""
    return notifications.get_hub(hub_id).hub_id


def principal_id(principal: Any) -> str | None:
    """A principal's user id: itself if a string, else its ``id`` attribute or ``"id"`` key."""
    if principal is None:
        return None
    if isinstance(principal, str):
        return principal
    if isinstance(principal, Mapping):
        value = principal.get("id")
    else:
        value = getattr(principal, "id", None)
    return None if value is None else str(value)


def resume_id(header: str | None, query: str | None) -> str | None:
    """The id to resume after: the ``Last-Event-ID`` header, else the ``lastEventId`` query value."""
    for value in (header, query):
        if value is not None and value.strip():
            return value.strip()
    return None


class Access:
    """Who may read which stream, for one web app."""

    def __init__(
        self,
        notifications: Notifications,
        authenticate: Authenticate | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.notifications = notifications
        self.authenticate = authenticate
        self.authorize = authorize

    @property
    def configured(self) -> bool:
        """True once any authentication or authorisation is set up: then streams are closed by default."""
        return (
            self.authenticate is not None
            or self.authorize is not None
            or self.notifications.plugins.implements("notifycore_authorize")
        )

    def principal(self, request: Any) -> Any:
        return None if self.authenticate is None else self.authenticate(request)

    def allows(self, principal: Any, stream: str) -> bool:
        if self.authorize is not None:
            return bool(self.authorize(principal, stream))
        answer = self.notifications.plugins.authorize(principal, stream)
        if answer is not None:
            return answer
        user = principal_id(principal)
        if user is not None and stream == user_stream(user):
            return True
        return not self.configured

    def user_stream(self, principal: Any) -> str | None:
        """The signed-in user's own stream, None when nobody is signed in."""
        user = principal_id(principal)
        return None if user is None else user_stream(user)


def unknown_hub_message(error: UnknownHub) -> dict[str, str]:
    return {"error": "not_found", "message": str(error)}
