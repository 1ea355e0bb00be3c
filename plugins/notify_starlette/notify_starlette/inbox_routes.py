"""The inbox and preference routes for Starlette (the core's :mod:`notifycore.web.inbox`)."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from notify_starlette._shared import client_left, incoming, response
from notifycore.web import WebProtocol
from notifycore.web.inbox import INBOX_ROUTES, InboxRoutes
from notifycore.web.protocol import other_method

__all__ = ["inbox_routes"]


class _InboxEndpoint:
    """An ASGI app answering every method of one path (Starlette routes a function to GET)."""

    def __init__(self, protocol: WebProtocol, path: str, allowed: str) -> None:
        self.protocol = protocol
        self.routes = InboxRoutes(protocol)
        self.path = path
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        steps = self.routes.route(self.path, request.method)
        if steps is None:
            reply = other_method(request.method, self.allowed)
        else:
            allow = self.protocol.options.allow_query_token
            try:
                reply = await self.protocol.arun(steps(incoming(request, allow_query_token=allow)))
            except ClientDisconnect:  # raised by the body's read: nothing was changed
                client_left(scope)
                return
        await response(reply)(scope, receive, send)


def inbox_routes(protocol: WebProtocol) -> list[Route]:
    """One route per path of :data:`~notifycore.web.inbox.INBOX_ROUTES`, every method."""
    return [Route(path, _InboxEndpoint(protocol, path, allowed)) for path, allowed in INBOX_ROUTES]
