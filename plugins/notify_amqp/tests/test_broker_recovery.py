"""A node that has not recovered a queue yet is waited for; only a server without streams is
misconfigured.

After a restart, RabbitMQ answers 404 "home node ... is down or inaccessible"
for a durable stream or queue it has not brought back yet. The tests make the
real node give that answer on demand: ``rabbitmqctl eval`` takes the queue's
record out of the node's table of running queues (its durable record stays,
which is what the node sees while it recovers) and puts it back.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from notify_amqp.backend import AmqpBackend
from notify_amqp.testing import RabbitServer
from notifycore import BackendUnavailable, ConfigurationError
from notifycore.testing import wait_for

_HIDE = (
    'Q = rabbit_misc:r(<<"/">>, queue, <<"{name}">>), {{ok, R}} = rabbit_amqqueue:lookup(Q), '
    "persistent_term:put({{notifycore_hidden, Q}}, R), mnesia:dirty_delete(rabbit_queue, Q)."
)
_RESTORE = (
    'Q = rabbit_misc:r(<<"/">>, queue, <<"{name}">>), '
    "mnesia:dirty_write(rabbit_queue, persistent_term:get({{notifycore_hidden, Q}}))."
)


@contextmanager
def recovering(server: RabbitServer, name: str) -> Iterator[None]:
    """While inside, the node answers for queue ``name`` as while it recovers it."""
    server.ctl("eval", _HIDE.format(name=name))
    try:
        yield
    finally:
        server.ctl("eval", _RESTORE.format(name=name))


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records with a traceback logged by the backend or the AMQP libraries."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.exc_info and r.name.split(".")[0] in {"notify_amqp", "amqp", "kombu"}
    ]


def test_a_stream_the_node_is_still_recovering_is_waited_for_then_unavailable(
    rabbit_server: RabbitServer, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"recover-{uuid.uuid4().hex[:6]}."
    first = AmqpBackend(rabbit_server.url, prefix=prefix)
    impatient = AmqpBackend(rabbit_server.url, prefix=prefix, recovery_wait=0.5)
    patient = AmqpBackend(rabbit_server.url, prefix=prefix, recovery_wait=120)
    caplog.set_level(logging.DEBUG, logger="notify_amqp")
    published: list[str] = []
    thread = threading.Thread(target=lambda: published.append(patient.publish("s", b"two")))
    try:
        first.publish("s", b"one")
        with recovering(rabbit_server, prefix + "stream.s"):
            # Not a configuration error: the server has streams, the node is coming back.
            with pytest.raises(BackendUnavailable, match="down or inaccessible"):
                impatient.publish("s", b"never stored")
            caplog.clear()
            thread.start()
            wait_for(lambda: "RabbitMQ is recovering" in caplog.text, 60, "the publish to wait")
        thread.join(120)
        assert published, "the waiting publish went through once the stream was back"
        messages = first.read("s").messages
        assert [m.data for m in messages] == [b"one", b"two"]
        assert messages[-1].id == published[0]
        assert not _tracebacks(caplog)
    finally:
        if thread.ident is not None:
            thread.join(120)
        for backend in (first, impatient, patient):
            backend.close()


def test_a_job_queue_the_node_is_still_recovering_is_waited_for(
    rabbit_server: RabbitServer,
) -> None:
    prefix = f"recoverq-{uuid.uuid4().hex[:6]}."
    first = AmqpBackend(rabbit_server.url, prefix=prefix)
    worker = AmqpBackend(rabbit_server.url, prefix=prefix, recovery_wait=0.5)
    try:
        job_id = first.enqueue("q", b"{}")
        with (
            recovering(rabbit_server, prefix + "q"),
            pytest.raises(BackendUnavailable, match="down or inaccessible"),
        ):
            worker.reserve("q", visibility_timeout=60)
        job = worker.reserve("q", visibility_timeout=60, block=10)
        assert job is not None and job.id == job_id
        assert worker.ack(job) is True
    finally:
        first.close()
        worker.close()


def test_a_follower_reports_a_stream_being_recovered_once_and_resumes(
    rabbit_server: RabbitServer, states: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"recoverf-{uuid.uuid4().hex[:6]}."
    publisher = AmqpBackend(rabbit_server.url, prefix=prefix)
    follower = AmqpBackend(rabbit_server.url, prefix=prefix)
    caplog.set_level(logging.DEBUG)
    received: list[bytes] = []
    stop = threading.Event()

    def follow(after: str) -> None:
        for batch in follower.follow("s", after, stop=stop, poll=0.2):
            received.extend(m.data for m in batch.messages)

    try:
        first = publisher.publish("s", b"one")
        with recovering(rabbit_server, prefix + "stream.s"):
            thread = threading.Thread(target=follow, args=(first,))
            thread.start()
            wait_for(lambda: "disconnected" in states, 60, "the follower to report the outage")
        wait_for(lambda: "reconnected" in states, 60, "the follower to report its recovery")
        publisher.publish("s", b"two")
        wait_for(lambda: received == [b"two"], 60, "the follower to go on where it was")
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        assert states == ["disconnected", "reconnected"], "once each, not once per retry"
        assert not _tracebacks(caplog)
    finally:
        stop.set()
        publisher.close()
        follower.close()


#: The feature flags of RabbitMQ 3.10 a node starts with, stream_queue left out.
_WITHOUT_STREAMS = (
    "quorum_queue,implicit_default_bindings,virtual_host_metadata,maintenance_mode_status,"
    "user_limits"
)


def test_a_server_without_its_stream_feature_flag_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    server = RabbitServer(tmp_path)
    server.env["RABBITMQ_FEATURE_FLAGS"] = _WITHOUT_STREAMS
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    backend: Any = None
    try:
        backend = AmqpBackend(server.url)
        with pytest.raises(ConfigurationError, match="feature flag stream_queue"):
            backend.publish("s", b"x")
        # The refusal closed that connection; the backend goes on with a new one.
        backend.enqueue("q", b"{}")
        job = backend.reserve("q", visibility_timeout=60)
        assert job is not None and backend.ack(job) is True
    finally:
        if backend is not None:
            backend.close()
        server.shutdown()
