"""The web demo: a live feed over SSE, a form that sends, two users with their own streams.

Run it with ``./scripts/demo``. From another terminal, events sent with
``.venv/bin/notifycore send --app examples.demo.app:notifications --type chat
--title Hello --recipient alice`` appear on alice's page, and only there: an
event with recipients is private, so it goes to each recipient's own stream
and never to the hub's feed that everyone reads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask, redirect, render_template, session, url_for
from werkzeug.wrappers import Response

from notify_flask import stream_blueprint
from notifycore import Event, LogConsumer, Notifications, PushConsumer
from notifycore.web import principal_id

HERE = Path(__file__).resolve().parent
USERS = ("alice", "bob")

logger = logging.getLogger("notifycore.demo")


def signed_in(req: Any) -> str | None:
    """The demo's authentication: the user picked on the page, kept in the session."""
    user = session.get("user")
    return user if user in USERS else None


def may_read(principal: Any, stream: str) -> bool:
    """Signed-in users read the demo hub's feed (each always reads their own ``user:`` stream)."""
    return principal is not None and stream == "event-hub-Demo"


def may_send(principal: Any, event: Event) -> bool:
    """Signed-in users send, as themselves only (the form leaves the sender to the server)."""
    return principal is not None and event.sender == principal_id(principal)


def create_app(database: str | None = None) -> tuple[Flask, Notifications]:
    app = Flask(__name__, template_folder=str(HERE / "templates"))
    app.config.update(
        SECRET_KEY=os.environ.get("DEMO_SECRET_KEY", os.urandom(16).hex()),
        # The default backend, an SQLite file: the page, the CLI and the worker share it.
        BACKEND="sqlite",
        BACKEND_URL=database
        or os.environ.get("NOTIFYCORE_BACKEND_URL", "sqlite:///notifycore-demo.db"),
        RETRY_BACKOFF=0.5,
    )
    notifications = Notifications(app)
    hub = notifications.create_hub("Demo")
    # Events without recipients go to the hub's feed; events with recipients, to each
    # recipient's own stream only (private by default).
    hub.register_consumer(PushConsumer())
    hub.register_consumer(LogConsumer(logging.getLogger("notifycore.demo.events")), name="demo.log")

    @hub.register_consumer(name="demo.digest", mode="queued")
    def digest(event: Event) -> None:
        logger.info(
            "background worker handled %r for %s", event.title, list(event.recipients) or "everyone"
        )

    app.register_blueprint(
        stream_blueprint(
            authenticate=signed_in, authorize=may_read, authorize_send=may_send, heartbeat=10
        )
    )

    @app.get("/")
    def index() -> str:
        return render_template("index.html", user=session.get("user"), users=USERS)

    @app.get("/login/<user>")
    def login(user: str) -> Response:
        if user in USERS:
            session["user"] = user
        return redirect(url_for("index"))

    return app, notifications


def notifications() -> Notifications:
    """For ``notifycore ... --app examples.demo.app:notifications``: the demo's hubs and consumers."""
    return create_app()[1]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = int(os.environ.get("PORT", "5000"))
    app, notifications = create_app()
    notifications.start_worker()
    print(f"\n  notifycore demo: open http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    print(
        "  from another terminal: .venv/bin/notifycore send --app examples.demo.app:notifications "
        "--type chat --title Hello --recipient alice\n",
        flush=True,
    )
    try:
        app.run(host="127.0.0.1", port=port, threaded=True)
    finally:
        notifications.close()


if __name__ == "__main__":
    main()
