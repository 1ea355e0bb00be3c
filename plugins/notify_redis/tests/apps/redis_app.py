"""The application the Redis worker test runs with ``notifycore worker --app redis_app``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from notifycore import Event, Notifications

OUT = Path(os.environ["WORKER_TEST_DIR"])
notifications = Notifications()  # BACKEND and REDIS_URL come from NOTIFYCORE_* variables
hub = notifications.create_hub("Jobs")


@hub.register_consumer(name="work", mode="queued")
def work(event: Event) -> None:
    if event.title == "slow" and not (OUT / "slow-tried").exists():
        (OUT / "slow-tried").touch()
        time.sleep(600)  # the first try hangs; the test kills this worker here
    fd = os.open(OUT / "done.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event.event_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
