"""The application the Redis worker tests run with ``notifycore worker --app redis_app``.

Each consumer writes one line per event to a file in $WORKER_TEST_DIR with a
single write. ``crash`` ends its worker process (``os._exit``) on events
titled "crash"; the ``worker.backend_errors`` metric is written to
``backend-errors.log``, so a test can wait until a worker met an outage often.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from notifycore import Event, Notifications, hookimpl
from notifycore.plugins import get_plugins

OUT = Path(os.environ["WORKER_TEST_DIR"])
notifications = Notifications()  # BACKEND and REDIS_URL come from NOTIFYCORE_* variables
hub = notifications.create_hub("Jobs")


def record(name: str, line: str) -> None:
    fd = os.open(OUT / f"{name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@hub.register_consumer(name="work", mode="queued")
def work(event: Event) -> None:
    if event.title == "slow" and not (OUT / "slow-tried").exists():
        (OUT / "slow-tried").touch()
        time.sleep(600)  # the first try hangs; the test kills this worker here
    record("done", event.event_id)


@hub.register_consumer(name="crash", mode="queued")
def crash(event: Event) -> None:
    if event.title == "crash":
        record("crash-tries", event.event_id)
        os._exit(3)  # like an OOM kill or a segfault: no exception, no cleanup
    record("crash-ok", event.event_id)


class BackendErrors:
    @hookimpl
    def notifycore_metric(self, name: str, value: float, tags: Any) -> None:
        if name == "worker.backend_errors":
            record("backend-errors", name)


get_plugins().register(BackendErrors(), name="backend-errors")
