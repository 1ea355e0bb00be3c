"""An application for the worker process tests (``notifycore worker --app worker_app``).

Settings come from NOTIFYCORE_* variables; each consumer appends the event id
to a file in $WORKER_TEST_DIR with a single write, so lines never interleave.
When $WORKER_TEST_DIR/pause exists, every worker thread stops right after a
de-duplicating consumer ran (its key recorded, the job not yet acked), so the
test can SIGKILL the worker in the middle of jobs. The ``crash`` consumer ends
its worker process (``os._exit``) on events titled "crash" (after a first try
that raises, for "crash after an error"); ``hang`` never returns.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from notifycore import Event, Notifications, hookimpl
from notifycore.plugins import get_plugins

OUT = Path(os.environ["WORKER_TEST_DIR"])

notifications = Notifications()
hub = notifications.create_hub("Jobs")


def record(name: str, event: Event) -> None:
    fd = os.open(OUT / f"{name}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event.event_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def wait_at_the_gate() -> None:
    """With $WORKER_TEST_DIR/gate-required, hold each thread's first job until the test opens the gate."""
    if (OUT / "gate-required").exists() and not (OUT / "gate").exists():
        (OUT / f"waiting-{os.getpid()}-{threading.get_ident()}").touch()
        deadline = time.monotonic() + 60
        while not (OUT / "gate").exists() and time.monotonic() < deadline:
            time.sleep(0.01)


@hub.register_consumer(name="plain", mode="queued")
def plain(event: Event) -> None:
    wait_at_the_gate()
    record("plain", event)


@hub.register_consumer(name="deduped", mode="queued", dedupe=True)
def deduped(event: Event) -> None:
    record("deduped", event)


@hub.register_consumer(name="slow", mode="queued")
def slow(event: Event) -> None:
    (OUT / f"started-{event.event_id}").touch()
    time.sleep(1.0)
    record("slow", event)


@hub.register_consumer(name="crash", mode="queued")
def crash(event: Event) -> None:
    if event.title.startswith("crash"):
        record("crash-tries", event)
        tries = (OUT / "crash-tries.log").read_text().count(event.event_id)
        if event.title == "crash after an error" and tries == 1:
            raise ValueError("first try fails")
        os._exit(3)  # like an OOM kill or a segfault: no exception, no cleanup
    record("crash-ok", event)


@hub.register_consumer(name="hang", mode="queued")
def hang(event: Event) -> None:
    record("hang-started", event)
    time.sleep(600)


class PauseForKill:
    @hookimpl
    def notifycore_after_consume(self, hub: Any, consumer: str, event: Event) -> None:
        if consumer == "deduped" and (OUT / "pause").exists():
            (OUT / f"paused-{os.getpid()}-{threading.get_ident()}").touch()
            time.sleep(600)


get_plugins().register(PauseForKill(), name="pause-for-kill")
