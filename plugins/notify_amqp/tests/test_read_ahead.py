"""The connections read ahead (many frames per read): every message still comes back whole.

Sizes around the read-ahead size and RabbitMQ's frame size (a body over 128 KB comes in
several frames), empty bodies, and a burst of small messages that puts many frames into
one read — through a publisher's tail, a read and a follower.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from notify_amqp.backend import AmqpBackend
from notify_amqp.connection import READ_AHEAD
from notifycore.backends.base import StreamMessage


def test_messages_of_every_size_come_back_whole(rabbit_server: Any) -> None:
    backend = AmqpBackend(rabbit_server.url, prefix=f"ahead-{uuid.uuid4().hex[:6]}.")
    sizes = [0, 1, 7, 8, READ_AHEAD - 8, READ_AHEAD, READ_AHEAD + 1, 131_072, 300_001]
    bodies = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    bodies += [f"small {i}".encode() for i in range(600)]  # many frames in one read
    stop = threading.Event()
    try:
        first = backend.publish("s", b"start")
        link = backend._link()
        transport = link.conn.connection.transport
        assert "_read" in vars(transport), "the connection reads ahead"
        ids = backend.publish("s", bodies[0]), *backend.publish_many("s", bodies[1:])
        assert len(set(ids)) == len(bodies)
        got: list[StreamMessage] = []
        for batch in backend.follow("s", first, stop=stop, poll=0.2):
            got.extend(batch.messages)
            if len(got) >= len(bodies):
                break
        assert [m.data for m in got] == bodies
        assert [m.id for m in got] == list(ids)
        read = backend.read("s", first, limit=len(bodies))
        assert [m.data for m in read.messages] == bodies
    finally:
        stop.set()
        backend.close()


def test_an_empty_job_payload_comes_back_as_bytes(rabbit_server: Any) -> None:
    """py-amqp leaves an empty body as a str; a job's payload is bytes all the same."""
    backend = AmqpBackend(rabbit_server.url, prefix=f"empty-{uuid.uuid4().hex[:6]}.")
    try:
        backend.enqueue("q", b"")
        job = backend.reserve("q", visibility_timeout=30, block=10.0)
        assert job is not None and job.payload == b""
        assert backend.retry(job, delay=0.0, error="again")
        again = backend.reserve("q", visibility_timeout=30, block=10.0)
        assert again is not None and again.payload == b"" and again.attempts == 2
        assert backend.ack(again)
    finally:
        backend.close()
