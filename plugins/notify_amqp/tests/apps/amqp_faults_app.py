"""The application of the RabbitMQ worker-fault tests (``notifycore worker --app amqp_faults_app``).

Each consumer writes one line per event to a file in $WORKER_TEST_DIR with a
single write. ``crash`` ends its worker process (``os._exit``) on events
titled "crash"; ``hang`` never returns.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from notifycore import Event, Notifications

OUT = Path(os.environ["WORKER_TEST_DIR"])
notifications = Notifications()  # BACKEND and AMQP_URL come from NOTIFYCORE_* variables
hub = notifications.create_hub("Jobs")


def record(name: str, event: Event) -> None:
    fd = os.open(OUT / f"{name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event.event_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@hub.register_consumer(name="crash", mode="queued")
def crash(event: Event) -> None:
    if event.title == "crash":
        record("crash-tries", event)
        os._exit(3)  # like an OOM kill or a segfault: no exception, no cleanup
    record("crash-ok", event)


@hub.register_consumer(name="hang", mode="queued")
def hang(event: Event) -> None:
    record("hang-started", event)
    time.sleep(600)
