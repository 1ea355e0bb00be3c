"""A console walk through notifycore: hubs, filters, inline, pushed and queued consumers.

It runs on the default backend, an SQLite file (here in a fresh temporary
directory), with the worker in a background thread of this process.

Run it with ``./scripts/demo`` (which sets up the virtualenv) or, inside it,
``python examples/console_demo.py``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from notifycore import Event, LogConsumer, Notifications, PushConsumer
from notifycore.filters import BeforeDate, Not, WithEventType, WithRecipients


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s")
    database = Path(tempfile.mkdtemp(prefix="notifycore-demo-")) / "notifycore.db"
    notifications = Notifications(config={"BACKEND_URL": f"sqlite:///{database}"})
    print(f"notifycore demo on the {type(notifications.backend).__name__}: {database}\n")

    # A hub with the Flask-Notifications filter: test events sent from now on.
    hub = notifications.create_hub("TestHub")
    hub.filter_by(WithEventType("test") & Not(BeforeDate(datetime.now(UTC) - timedelta(seconds=1))))

    @hub.register_consumer(name="demo.print")
    def show(event: Event) -> None:
        print(f"  inline consumer got: {event.title!r} from {event.sender}")

    log_path = database.parent / "events.log"
    hub.register_consumer(LogConsumer(log_path))
    hub.register_consumer(PushConsumer(per_recipient=True))

    @hub.register_consumer(name="demo.mailer", mode="queued")
    def mailer(event: Event) -> None:
        print(
            f"  queued consumer (in the worker) mailed: {event.title!r} to {list(event.recipients)}"
        )

    # A second hub: only what is addressed to alice.
    alice_hub = notifications.create_hub("AliceOnly")
    alice_hub.filter_by(WithRecipients(["alice"], mode="any"))
    alice_hub.register_consumer(
        lambda e: print(f"  alice's hub got: {e.title!r}"), name="demo.alice"
    )
    notifications.start_worker()

    print("1. an event that passes TestHub's filter and is addressed to alice and bob:")
    result = notifications.send(
        Event(None, "test", "Build finished", "All green", sender="ci", recipients=["alice", "bob"])
    )
    for outcome in result.outcomes:
        print(f"     {outcome.hub}/{outcome.consumer}: {outcome.status}")

    print("2. an event of another type (TestHub's filter drops it):")
    result = notifications.send(Event(None, "other", "Not for TestHub", sender="ci"))
    print(f"     hubs matched: {result.hubs or 'none'}")

    print("3. the background worker runs the queued consumer:")
    deadline = time.monotonic() + 30
    while notifications.backend.queue_length("notifycore") and time.monotonic() < deadline:
        time.sleep(0.05)

    print("4. what the push streams hold (what a browser would replay):")
    for stream in ("event-hub-TestHub", "user:alice", "user:bob"):
        messages = notifications.backend.read(stream).messages
        titles = [Event.from_json(m.data).title for m in messages]
        print(f"     {stream}: {titles}")

    print(f"5. the log consumer wrote JSON Lines to {log_path}:")
    print("     " + log_path.read_text().splitlines()[-1][:100] + "...")
    notifications.close()
    print(
        "\nThe streams stay in the file. Replay one from another terminal with:\n"
        f"  NOTIFYCORE_BACKEND_URL=sqlite:///{database} "
        ".venv/bin/notifycore tail TestHub --since 0 --timeout 2\n\ndone."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
