"""The web demo: a notification centre, a live feed over SSE, a form that sends, two users.

Each user (alice, bob) has a bell with their unread count, a dropdown list of
their inbox where items are marked read (one, or all), and preference toggles
for the demo's channels: the bell (``inbox``), the live list (``push``) and
the digest (``digest``). Every open tab follows the user's own stream, so a
new item or a read in one tab shows in every other at once.

Run it with ``./scripts/demo``. From another terminal, events sent with
``.venv/bin/notifycore send --app examples.demo.app:notifications --type chat
--title Hello --recipient alice`` appear on alice's page, and only there: an
event with recipients is private, so it goes to each recipient's own stream
and never to the hub's feed that everyone reads.

The page loads each stream's recent history when it opens, then follows it
live from the last event it showed. The log consumer writes every event as a
JSON line to a file beside the database (``notifycore-demo-events.jsonl``),
from whichever process sent it — the web server, ``notifycore send``, the
worker — and the demo's terminal prints each line as it is written.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from flask import Flask, redirect, render_template, session, url_for
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from notify_flask import stream_blueprint
from notifycore import DigestConsumer, Event, LogConsumer, Notifications, PushConsumer
from notifycore.web import principal_id

HERE = Path(__file__).resolve().parent
USERS = ("alice", "bob")
DEFAULT_DATABASE = "sqlite:///notifycore-demo.db"
#: Events each stream keeps for replay: the history a page loads when it opens.
KEPT = 200
#: Seconds of each digest window (aligned on the clock: once a minute).
DIGEST_EVERY = 60
#: The channels a user turns on or off on the page (the registered consumer names, and the
#: inbox), with what the page calls them.
CHANNELS = {
    "inbox": "the bell (keep it in my inbox)",
    "push": "the live list on this page",
    "digest": "a digest of what I left unread (in the demo's terminal, once a minute)",
}

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


def log_path_for(database: str) -> Path:
    """The log consumer's file: beside the SQLite database (in the working directory otherwise)."""
    if database.startswith("sqlite:///"):
        path = database[len("sqlite:///") :].split("?", 1)[0]
        if path and path != ":memory:":
            return Path(path).with_name("notifycore-demo-events.jsonl")
    return Path("notifycore-demo-events.jsonl")


def create_app(database: str | None = None) -> tuple[Flask, Notifications]:
    database = database or os.environ.get("NOTIFYCORE_BACKEND_URL", DEFAULT_DATABASE)
    log_path = log_path_for(database)
    app = Flask(__name__, template_folder=str(HERE / "templates"))
    app.config.update(
        SECRET_KEY=os.environ.get("DEMO_SECRET_KEY", os.urandom(16).hex()),
        # The default backend, an SQLite file: the page, the CLI and the worker share it.
        BACKEND="sqlite",
        BACKEND_URL=database,
        RETRY_BACKOFF=0.5,
        # What a page replays when it opens: the last events of each stream.
        STREAM_MAXLEN=KEPT,
        # The notification centre: every user's inbox and preferences, in the same file.
        INBOX="on",
    )
    notifications = Notifications(app)
    hub = notifications.create_hub("Demo")
    # Events without recipients go to the hub's feed; events with recipients, to each
    # recipient's own stream only (private by default).
    hub.register_consumer(PushConsumer(), name="push")
    # Every event, private ones too, as a JSON line: the operator's view, not a page's.
    hub.register_consumer(LogConsumer(log_path), name="demo.log")

    # Once a minute, each user's events still unread become one digest (docs/inbox.md,
    # "Digests"): here a line in the terminal, where a real application would mail it.
    def write_digest(digest: Event) -> None:
        (user,) = digest.recipients
        logger.info("digest for %s: %s\n%s", user, digest.title, digest.body)

    hub.register_consumer(
        DigestConsumer(write_digest, notifications, every=DIGEST_EVERY),
        name="digest",
        mode="queued",
    )

    app.register_blueprint(
        stream_blueprint(
            authenticate=signed_in, authorize=may_read, authorize_send=may_send, heartbeat=10
        )
    )

    @app.get("/")
    def index() -> str:
        return render_template(
            "index.html",
            user=session.get("user"),
            users=USERS,
            log_path=log_path.name,
            kept=KEPT,
            channels=CHANNELS,
        )

    @app.get("/login/<user>")
    def login(user: str) -> Response:
        if user in USERS:
            session["user"] = user
        return redirect(url_for("index"))

    app.config["DEMO_LOG_PATH"] = str(log_path)
    return app, notifications


def notifications() -> Notifications:
    """For ``notifycore ... --app examples.demo.app:notifications``: the demo's hubs and consumers."""
    return create_app()[1]


def follow_log(path: Path, stop: threading.Event, out: Any = None) -> None:
    """Print each line the log consumer appends to ``path`` (from any process) as it comes."""
    out = out or sys.stdout
    position = path.stat().st_size if path.exists() else 0
    pending = b""
    while not stop.wait(0.3):
        try:
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
        except FileNotFoundError:
            continue
        position += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            print(f"  log consumer: {line.decode(errors='replace')}", file=out, flush=True)


def listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port``; a clear message and exit status 1 if it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {port} on 127.0.0.1 is already in use by another program"
        else:
            reason = f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
        sys.stderr.write(
            f"notifycore demo: {reason}; stop that program, or choose another port: "
            f"PORT={port + 1} ./scripts/demo\n"
        )
        sys.exit(1)
    return sock


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    text = os.environ.get("PORT", "5000")
    if not text.isdigit() or not 0 < int(text) < 65536:
        sys.exit(f"notifycore demo: PORT must be a port number (1-65535), not {text!r}")
    port = int(text)
    # The port first: a taken one is said before anything else is started or printed.
    sock = listen(port)
    app, notifications = create_app()
    server = make_server("127.0.0.1", port, app, threaded=True, fd=sock.fileno())
    sock.close()  # the server listens on its own copy of the socket
    notifications.start_worker()
    log_path = Path(app.config["DEMO_LOG_PATH"])
    stop = threading.Event()
    threading.Thread(target=follow_log, args=(log_path, stop), name="demo-log", daemon=True).start()
    print(f"\n  notifycore demo: open http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    print(
        "  from another terminal: .venv/bin/notifycore send --app examples.demo.app:notifications "
        "--type chat --title Hello --recipient alice"
    )
    print(
        f"  the log consumer writes every event to {log_path}; each line shows here\n", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
        notifications.close()


if __name__ == "__main__":
    main()
