"""The worker script: take the jobs off the ``eventqueue`` queue, one at a time, in order.

Run it with ``python -m examples.kinto_async_queue.worker`` (``--config FILE``
for another configuration). It builds the same listeners from the same file,
so it knows what each job names, and runs until SIGTERM or Ctrl-C; the job
in flight finishes and is acknowledged first. ``notifycore worker --config
FILE -Q eventqueue`` is the same loop as a command.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from examples.kinto_async_queue.app import CONFIG
from notifycore import Notifications, Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG))
    args = parser.parse_args(argv)
    notifications = Notifications(config=args.config)
    # One thread: jobs run one after the other, in the order they were queued.
    worker = Worker(notifications, ["eventqueue"], concurrency=1)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"worker: waiting for jobs on eventqueue ({notifications.backend!r})", flush=True)
    try:
        worker.run()
    finally:
        notifications.close()
    print("worker: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
