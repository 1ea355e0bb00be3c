"""RabbitMQ's resource alarms against a real node: while it blocks publishers
(``connection.blocked``), a publish fails at once with the broker's reason and says whether
the message may be stored; reads go on; once the alarm clears, the same backend publishes
again. The alarm is the node's memory alarm (``RabbitServer.memory_alarm``)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from notify_amqp.backend import AmqpBackend
from notifycore import BackendUnavailable
from notifycore.testing import wait_for

REASON = "RabbitMQ is blocking publishers: low on memory"


def _all(backend: AmqpBackend, stream: str) -> list[bytes]:
    """Every message of ``stream``, oldest first."""
    seen: list[bytes] = []
    after = "0"
    for _ in range(50):
        got = backend.read(stream, after, block=0.5)
        if not got.messages:
            return seen
        seen += [m.data for m in got.messages]
        after = got.messages[-1].id
    raise AssertionError("the stream did not end")


def test_blocked_publishers_fail_fast_reads_go_on_and_publishing_resumes(
    rabbit_server: Any,
) -> None:
    prefix = f"blocked-{uuid.uuid4().hex[:6]}."
    backend = AmqpBackend(rabbit_server.url, prefix=prefix, retries=2)
    publisher = AmqpBackend(rabbit_server.url, prefix=prefix, retries=2)
    worker = AmqpBackend(rabbit_server.url, prefix=prefix, retries=2)
    follower = AmqpBackend(rabbit_server.url, prefix=prefix, retries=2)
    received: list[bytes] = []
    stop = threading.Event()

    def follow() -> None:
        for batch in follower.follow("s", "0", stop=stop, poll=0.1):
            received.extend(m.data for m in batch.messages)

    thread = threading.Thread(target=follow, daemon=True)
    try:
        backend.publish("s", b"before")  # declares the stream and the queue first
        backend.enqueue("q", b"job before")
        thread.start()
        wait_for(lambda: b"before" in received, 30, "the follower to read the first message")
        with rabbit_server.memory_alarm():
            # Sent before the block is known: RabbitMQ blocks the connection at once, the
            # confirm waits for the alarm to clear. The caller learns it may be stored.
            with pytest.raises(BackendUnavailable) as in_flight:
                backend.append("s", b"in flight")
            assert REASON in str(in_flight.value)
            assert "may still be stored" in str(in_flight.value)
            # Now known blocked: refused before anything is sent, so surely not stored.
            for refuse in (
                lambda: backend.append("s", b"refused"),
                lambda: backend.publish("s", b"refused"),
                lambda: backend.enqueue("q", b"refused job"),
            ):
                with pytest.raises(BackendUnavailable) as refused:
                    refuse()
                assert REASON in str(refused.value)
                assert "not stored" in str(refused.value)
            # publish() (waiting for its tail) and enqueue() on other backends learn it too.
            with pytest.raises(BackendUnavailable) as published:
                publisher.publish("s", b"published in flight")
            assert REASON in str(published.value)
            assert "may still be stored" in str(published.value)
            with pytest.raises(BackendUnavailable) as enqueued:
                worker.enqueue("q", b"job in flight")
            assert REASON in str(enqueued.value)
            assert "may still be stored" in str(enqueued.value)
            # Reads go on, on the backend (and thread) whose publish was blocked too.
            job = backend.reserve("q", visibility_timeout=30, block=10)
            assert job is not None and job.payload == b"job before"
            assert backend.ack(job)
            assert b"before" in _all(backend, "s")
            assert backend.last_id("s") is not None

        def appended() -> bool:
            try:
                backend.append("s", b"after")
            except BackendUnavailable as exc:  # until RabbitMQ's unblock is read: not sent
                assert REASON in str(exc) and "not stored" in str(exc)
                return False
            return True

        wait_for(appended, 60, "the same backend to publish once the alarm cleared")
        assert backend.publish("s", b"published after")
        backend.enqueue("q", b"job after")
        stored = _all(backend, "s")
        assert stored.count(b"after") == 1 and stored.count(b"published after") == 1
        assert b"refused" not in stored
        assert stored.count(b"in flight") <= 1 and stored.count(b"published in flight") <= 1
        wait_for(lambda: b"published after" in received, 30, "the follower to go on")
        assert received.count(b"after") == 1
        jobs = []
        while (job := backend.reserve("q", visibility_timeout=30, block=2)) is not None:
            jobs.append(job.payload)
            backend.ack(job)
        assert jobs.count(b"job after") == 1 and b"refused job" not in jobs
    finally:
        stop.set()
        thread.join(timeout=30)
        for each in (backend, publisher, worker, follower):
            each.close()


def test_a_job_whose_retry_meets_the_alarm_is_not_handed_back_at_once(rabbit_server: Any) -> None:
    # A worker's retry() publishes the job's next try. Refused because RabbitMQ blocks
    # publishers, the job used to be handed back at once: reserved and refused again in a
    # loop (thousands of tries in seconds, then dead-lettered as "worker died"). It stays
    # leased instead, until its visibility timeout, and comes back once.
    prefix = f"blocked-{uuid.uuid4().hex[:6]}."
    backend = AmqpBackend(rabbit_server.url, prefix=prefix, retries=2)
    try:
        backend.enqueue("q", b"job")
        with rabbit_server.memory_alarm():

            def learn_of_the_block() -> None:  # another thread: another connection
                with pytest.raises(BackendUnavailable, match="may still be stored"):
                    backend.append("s", b"in flight")

            thread = threading.Thread(target=learn_of_the_block)
            thread.start()
            thread.join(60)
            assert not thread.is_alive()
            # Reserved only now, right before the retry: raising the alarm and learning of
            # the block take seconds of rabbitmqctl on a busy machine, and a lease that ran
            # out meanwhile is rightly handed back by retry() itself (it returns False for
            # that reason, and the job comes back at once, untried).
            job = backend.reserve("q", visibility_timeout=15, block=10)
            assert job is not None and job.attempts == 1
            assert backend.retry(job, delay=30, error="the consumer failed") is False
            again = backend.reserve("q", visibility_timeout=15, block=2)
            assert again is None, "the job is not handed back at once"
        found = []

        def came_back() -> bool:
            got = backend.reserve("q", visibility_timeout=30, block=1)
            if got is not None:
                found.append(got)
                assert backend.ack(got)
            return bool(found)

        wait_for(came_back, 60, "the job to come back after its visibility timeout")
        assert [j.payload for j in found] == [b"job"] and found[0].attempts == 2
        assert backend.reserve("q", visibility_timeout=30, block=2) is None, "once"
    finally:
        backend.close()


def test_a_browse_that_meets_the_alarm_fails_and_lets_the_backend_close(
    rabbit_server: Any,
) -> None:
    # browse() publishes the ready jobs again (AMQP 0-9-1 cannot look without taking). Met
    # by the alarm, it closed its channel politely on the blocked connection, which RabbitMQ
    # does not answer while it blocks it: browse() hung for the whole alarm, and close()
    # waited behind it.
    prefix = f"blocked-{uuid.uuid4().hex[:6]}."
    backend = AmqpBackend(rabbit_server.url, prefix=prefix, retries=2)
    outcome: list[BaseException | list[Any]] = []
    closed = threading.Event()
    try:
        for n in range(3):
            backend.enqueue("q", b"job %d" % n)

        def browse() -> None:
            try:
                outcome.append(backend.browse("q"))
            except BaseException as exc:
                outcome.append(exc)

        def close() -> None:
            backend.close()
            closed.set()

        with rabbit_server.memory_alarm():
            thread = threading.Thread(target=browse, daemon=True)
            thread.start()
            thread.join(60)
            assert not thread.is_alive(), "browse() returns during the alarm"
            assert len(outcome) == 1 and isinstance(outcome[0], BackendUnavailable)
            assert REASON in str(outcome[0]) and "may still be stored" in str(outcome[0])
            closing = threading.Thread(target=close, daemon=True)
            closing.start()
            closing.join(60)
            assert closed.is_set(), "close() returns during the alarm"
    finally:
        backend.close()
