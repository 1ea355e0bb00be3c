"""The connections read ahead (many frames per read): every message still comes back whole.

Sizes around the read-ahead size and RabbitMQ's frame size (a body over 128 KB comes in
several frames), empty bodies, and a burst of small messages that puts many frames into
one read — through a publisher's tail, a read and a follower.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import amqp
import amqp.exceptions

from notify_amqp.backend import AmqpBackend
from notify_amqp.connection import READ_AHEAD
from notifycore.backends.base import StreamMessage
from notifycore.testing import wait_for


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


def test_a_follower_that_only_receives_keeps_its_connection_with_short_heartbeats(
    rabbit_server: Any, states: list[str]
) -> None:
    """A follower sends little (its acks go together): its reads send the heartbeats."""
    prefix = f"beat-{uuid.uuid4().hex[:6]}."
    follower = AmqpBackend(rabbit_server.url, prefix=prefix, heartbeat=1)
    publisher = AmqpBackend(rabbit_server.url, prefix=prefix)
    stop = threading.Event()
    got: list[bytes] = []
    silent: amqp.Connection | None = None

    def follow(after: str) -> None:
        for batch in follower.follow("s", after, stop=stop, poll=0.2):
            got.extend(m.data for m in batch.messages)

    def given_up() -> bool:
        assert silent is not None
        try:
            silent.drain_events(timeout=0.2)
        except TimeoutError:
            return False
        except (OSError, amqp.exceptions.AMQPError):
            return True
        return False

    try:
        thread = threading.Thread(target=follow, args=(publisher.publish("s", b"zero"),))
        thread.start()
        publisher.publish("s", b"one")
        wait_for(lambda: got == [b"one"], 30, "the follower to receive a message")
        # A connection that sends nothing, with twice the follower's interval: when RabbitMQ
        # has given up on it (two to three of its 2 s intervals), it would have given up on
        # a follower silent since before (two to three 1 s intervals).
        host = rabbit_server.url.split("@")[1].rstrip("/")
        silent = amqp.Connection(host, userid="guest", password="guest", heartbeat=2)
        silent.connect()
        wait_for(given_up, 60, "RabbitMQ to close a connection that sends no heartbeats")
        publisher.publish("s", b"two")
        wait_for(lambda: got == [b"one", b"two"], 30, "the follower to receive the next one")
        assert "disconnected" not in states, "the follower kept its connection"
    finally:
        stop.set()
        if silent is not None:
            silent.collect()
        follower.close()
        publisher.close()
