"""The application the RabbitMQ worker tests run with ``notifycore worker --app amqp_app``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from notifycore import Event, Notifications

OUT = Path(os.environ["WORKER_TEST_DIR"])
notifications = Notifications()  # BACKEND and AMQP_URL come from NOTIFYCORE_* variables
hub = notifications.create_hub("Jobs")


@hub.register_consumer(name="work", mode="queued")
def work(event: Event) -> None:
    if event.title == "slow" and not (OUT / "slow-tried").exists():
        (OUT / "slow-tried").touch()
        time.sleep(600)  # the first try hangs; the test kills this worker here
    if event.title == "hold" and not (OUT / "hold-tried").exists():
        (OUT / "hold-tried").touch()
        # The first try is a long consumer: the test freezes this worker here (SIGSTOP),
        # lets another worker take the job, then lets this one go on.
        for _ in range(6000):  # ten minutes at most
            if (OUT / "hold-release").exists():
                break
            time.sleep(0.1)
    fd = os.open(OUT / "done.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event.event_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@hub.register_consumer(name="poison", mode="queued", max_tries=3)
def poison(event: Event) -> None:
    if event.title == "poison":
        raise ValueError(f"cannot handle {event.title}")
    with open(OUT / "poison-ok.log", "a") as log:
        log.write(f"{event.event_id}\n")
