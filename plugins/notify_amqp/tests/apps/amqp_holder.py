"""A process that holds a RabbitMQ job the way a worker thread does, for the frozen-worker tests.

``python amqp_holder.py URL PREFIX HEARTBEAT MODE OUT`` reserves one job of queue
``jobs``, writes its id to ``OUT/held``, and then

- ``busy``: waits for a line on standard input, as a thread running a long
  consumer would: it does not touch the backend meanwhile;
- ``waiting``: waits in one blocking ``reserve`` on queue ``idle`` (the thread
  holds its connection all that time) until a job comes there;

then acks what it holds and writes ``{"acked": [...]}`` to ``OUT/result``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from notify_amqp.backend import AmqpBackend

url, prefix, heartbeat, mode, out = sys.argv[1:6]
folder = Path(out)
backend = AmqpBackend(url, prefix=prefix, heartbeat=int(heartbeat))
job = backend.reserve("jobs", visibility_timeout=600, block=120)
assert job is not None, "no job came"
(folder / "held.tmp").write_text(job.id)
(folder / "held.tmp").rename(folder / "held")
jobs = [job]
if mode == "busy":
    sys.stdin.readline()
else:
    other = backend.reserve("idle", visibility_timeout=600, block=300)
    assert other is not None, "no job came to the idle queue"
    jobs.append(other)
acked = [backend.ack(j) for j in jobs]
(folder / "result.tmp").write_text(json.dumps({"acked": acked}))
(folder / "result.tmp").rename(folder / "result")
backend.close()
