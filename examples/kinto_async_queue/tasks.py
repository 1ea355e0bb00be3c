"""The work the queued listener does, in the worker process: here, append one line per event.

The line records which record was created and which process handled it, in
``$KINTO_QUEUE_OUTPUT`` (``processed.jsonl`` in the working directory by
default). ``$KINTO_QUEUE_TASK_SECONDS`` simulates a long task, as the
tutorial's ``time.sleep(2)`` does.
"""

from __future__ import annotations

import json
import os
import time

from notifycore import Event


def track(event: Event) -> None:
    time.sleep(float(os.environ.get("KINTO_QUEUE_TASK_SECONDS", "0")))
    line = {
        "action": event["action"],
        "uri": event["uri"],
        "user_id": event.sender,
        "pid": os.getpid(),
    }
    # One write per line, so that a reader never sees half a line.
    with open(os.environ.get("KINTO_QUEUE_OUTPUT", "processed.jsonl"), "a") as output:
        output.write(json.dumps(line) + "\n")
