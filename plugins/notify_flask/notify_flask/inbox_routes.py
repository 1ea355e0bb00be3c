"""The inbox and preference routes on the Flask blueprint (the core's :mod:`notifycore.web.inbox`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from notifycore.web import WebProtocol
from notifycore.web.inbox import INBOX_ROUTES, InboxRoutes
from notifycore.web.protocol import other_method

__all__ = ["add_inbox_routes"]


def add_inbox_routes(
    blueprint: Blueprint,
    protocol: Callable[[], WebProtocol],
    incoming: Callable[[], Any],
    respond: Callable[[Any], Response],
) -> None:
    """Register :data:`~notifycore.web.inbox.INBOX_ROUTES`: each method the core answers, and a
    JSON 405 (or 204 for OPTIONS) for any other."""

    def view(path: str, allowed: str) -> Callable[[], Response]:
        def answer() -> Response:
            found = protocol()
            steps = InboxRoutes(found).route(path, request.method)
            if steps is None:
                return respond(other_method(request.method, allowed))
            return respond(found.run(steps(incoming())))

        return answer

    for number, (path, allowed) in enumerate(INBOX_ROUTES):
        blueprint.add_url_rule(
            path,
            f"inbox_{number}",
            view(path, allowed),
            methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            provide_automatic_options=False,
        )
