"""notify-amqp beside raw kombu, on a private rabbitmq-server started for the run.

Both sides use the same kinds of queue, publisher confirms and persistent
messages, and the same prefetch.

- enqueue: notifycore ``enqueue()`` (one confirmed publish to a quorum queue)
  beside kombu ``Producer.publish`` with ``confirm_publish``; batched,
  ``enqueue_many`` of 100 (confirms waited for once) beside 100 confirmed
  kombu publishes (kombu waits for each).
- reserve + ack: a worker's loop, notifycore ``reserve(block=...)`` + ``ack``
  with ``AMQP_PREFETCH`` 1 (two unacked), beside a kombu ``Consumer`` with
  ``prefetch_count`` 2, ``accept=["json"]`` and ``message.ack()`` from
  ``drain_events``.
- publish -> follow on a stream queue, one message per call, payloads carrying
  their send time: notifycore ``publish()`` (returns the message's offset, so it
  waits for it to come back through its tail consumer) and ``follow()``, beside
  a confirmed kombu publish and a kombu ``Consumer`` with ``x-stream-offset``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import Measurement, percentile_ms, timed_payload

NAME = "RabbitMQ backend beside kombu"


def _kombu(url: str) -> Any:
    from kombu import Connection

    connection = Connection(url, transport_options={"confirm_publish": True})
    connection.connect()
    return connection


def _kombu_queue(name: str, **arguments: Any) -> Any:
    from kombu import Queue

    return Queue(name, routing_key=name, durable=True, queue_arguments=arguments)


def queue_rows(url: str, count: int) -> list[Measurement]:
    from kombu import Consumer, Producer

    from notify_amqp.backend import AmqpBackend

    rows: list[Measurement] = []
    payload = timed_payload(0)

    # -- enqueue, one per call and batched -------------------------------------------------
    for batch in (1, 100):
        backend = AmqpBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}.")
        backend.enqueue("q", payload)  # declare and connect outside the timing
        started = time.perf_counter()
        for _ in range(0, count, batch):
            if batch == 1:
                backend.enqueue("q", payload)
            else:
                backend.enqueue_many("q", [payload] * batch)
        ours = count / (time.perf_counter() - started)
        backend.close()

        connection = _kombu(url)
        queue = _kombu_queue(f"rawq-{uuid.uuid4().hex[:6]}", **{"x-queue-type": "quorum"})
        producer = Producer(connection.channel())
        queue(producer.channel).declare()
        started = time.perf_counter()
        for _ in range(count):
            producer.publish(
                payload,
                routing_key=queue.name,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
            )
        raw = count / (time.perf_counter() - started)
        connection.release()
        label = "one per call" if batch == 1 else "batches of 100"
        rows.append(
            Measurement(
                f"RabbitMQ enqueue (confirmed), {label}",
                ours,
                "kombu publish, confirm_publish",
                raw,
                "jobs/s",
            )
        )

    # -- reserve + ack, a worker's loop ------------------------------------------------------
    backend = AmqpBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}.", prefetch=1)
    backend.enqueue_many("q", [payload] * count)
    started = time.perf_counter()
    done = 0
    while done < count:
        job = backend.reserve("q", visibility_timeout=60, block=1.0)
        if job is None:
            break
        backend.ack(job)
        done += 1
    ours = done / (time.perf_counter() - started)
    backend.close()

    connection = _kombu(url)
    queue = _kombu_queue(f"rawq-{uuid.uuid4().hex[:6]}", **{"x-queue-type": "quorum"})
    producer = Producer(connection.channel())
    queue(producer.channel).declare()
    for _ in range(count):
        producer.publish(payload, routing_key=queue.name, content_type="application/json")
    got = {"n": 0}

    def on_message(body: Any, message: Any) -> None:
        message.ack()
        got["n"] += 1

    started = time.perf_counter()
    with Consumer(
        connection.channel(),
        queues=[queue],
        callbacks=[on_message],
        accept=["json"],
        prefetch_count=2,
    ):
        deadline = time.monotonic() + 120
        while got["n"] < count and time.monotonic() < deadline:
            connection.drain_events(timeout=1.0)
    raw = got["n"] / (time.perf_counter() - started)
    connection.release()
    rows.append(
        Measurement(
            "RabbitMQ reserve + ack, a worker's loop (prefetch 2)",
            ours,
            "kombu Consumer, message.ack()",
            raw,
            "jobs/s",
        )
    )
    return rows


def follow_rows(url: str, count: int) -> list[Measurement]:
    from kombu import Consumer, Producer

    from notify_amqp.backend import AmqpBackend

    # notifycore: publish in a thread, follow here.
    backend = AmqpBackend(url, prefix=f"bench-{uuid.uuid4().hex[:6]}.")
    first = backend.publish("s", timed_payload(-1))
    stop = threading.Event()
    following = backend.follow("s", first, stop=stop, poll=1.0)
    latencies: list[float] = []

    def produce_ours() -> None:
        for i in range(count):
            backend.publish("s", timed_payload(i))

    started = time.perf_counter()
    thread = threading.Thread(target=produce_ours)
    thread.start()
    deadline = time.monotonic() + 120
    while len(latencies) < count and time.monotonic() < deadline:
        for message in next(following).messages:
            latencies.append(time.time() - json.loads(message.data)["t"])
    ours = len(latencies) / (time.perf_counter() - started)
    thread.join()
    stop.set()
    following.close()
    backend.close()
    ours_lat = latencies

    # kombu: confirmed publishes to a stream queue in a thread, a stream consumer here.
    name = f"raws-{uuid.uuid4().hex[:6]}"
    publisher = _kombu(url)
    reader = _kombu(url)
    stream = _kombu_queue(name, **{"x-queue-type": "stream"})
    stream(publisher.channel()).declare()
    raw_lat: list[float] = []

    def on_message(body: Any, message: Any) -> None:
        raw_lat.append(time.time() - body["t"])
        message.ack()

    def produce_raw() -> None:
        producer = Producer(publisher.channel())
        for i in range(count):
            producer.publish(
                timed_payload(i),
                routing_key=name,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
            )

    stream.consumer_arguments = {"x-stream-offset": "next"}
    with Consumer(
        reader.channel(),
        queues=[stream],
        callbacks=[on_message],
        accept=["json"],
        prefetch_count=500,
    ):
        started = time.perf_counter()
        thread = threading.Thread(target=produce_raw)
        thread.start()
        deadline = time.monotonic() + 120
        while len(raw_lat) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                reader.drain_events(timeout=1.0)
        raw = len(raw_lat) / (time.perf_counter() - started)
        thread.join()
    publisher.release()
    reader.release()
    rows = [
        Measurement(
            "RabbitMQ stream publish -> follow, one per call",
            ours,
            "kombu confirmed publish + stream Consumer",
            raw,
            "msgs/s",
        )
    ]
    for q in (50, 99):
        rows.append(
            Measurement(
                f"RabbitMQ stream publish -> follow p{q} latency",
                percentile_ms(ours_lat, q),
                "kombu confirmed publish + stream Consumer",
                percentile_ms(raw_lat, q),
                "ms",
                note="lower is better",
            )
        )
    return rows


def run(quick: bool = False) -> list[Measurement]:
    from notify_amqp.testing import RabbitServer

    count = 1_000 if quick else 5_000
    directory = Path(tempfile.mkdtemp())
    server = RabbitServer(directory)
    server.start()
    try:
        return [*queue_rows(server.url, count), *follow_rows(server.url, count)]
    finally:
        server.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
