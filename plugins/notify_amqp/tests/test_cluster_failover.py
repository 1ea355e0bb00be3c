"""A three-node RabbitMQ cluster loses the node leading the queues mid-run: nothing confirmed
is lost, and everything goes on by itself.

One backend on kombu's failover URL (``amqp://a;amqp://b;amqp://c``) connects to the first
node, which declares, and so leads, the job queue and the stream. While a producer enqueues,
a worker reserves and acks, a publisher publishes and a follower follows, that node is
stopped. Each of them reconnects to a survivor and goes on: every job whose enqueue returned
is processed, every message whose publish returned an id reaches the follower, in order and
once (the follower resumes from its offset on the stream's new leader).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from notify_amqp.backend import AmqpBackend
from notify_amqp.cluster_testing import RabbitClusterServers
from notifycore import BackendUnavailable
from notifycore.testing import wait_for

WAIT = 120.0  # the bound of every wait, never a pass/fail threshold


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitClusterServers]:
    servers = RabbitClusterServers(tmp_path_factory.mktemp("rabbit-failover"))
    try:
        servers.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield servers
    servers.shutdown()


class Loop:
    """Runs ``step`` in a thread until stopped; a BackendUnavailable (the failover) is
    counted and the step tried again, any other error ends the loop and is kept."""

    def __init__(self, name: str, step: Callable[[], None]) -> None:
        self.step = step
        self.stop = threading.Event()
        self.unavailable = 0
        self.last_unavailable: BackendUnavailable | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(1_000_000):  # bounded: stopped long before
            if self.stop.is_set():
                return
            try:
                self.step()
            except BackendUnavailable as exc:
                self.unavailable += 1
                self.last_unavailable = exc
            except BaseException as exc:
                self.failure = exc
                return

    def end(self) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), f"{self.thread.name} stopped"
        assert self.failure is None, f"{self.thread.name}: {self.failure!r}"


def test_the_node_leading_the_queues_stops_mid_run(cluster: RabbitClusterServers) -> None:
    first = cluster.nodes[0]
    backend = AmqpBackend(cluster.url, prefix=f"failover-{uuid.uuid4().hex[:6]}.")
    queue, stream = "jobs", "events"
    backend.enqueue(queue, b'"warm-up"')  # declared from the first node: it leads them
    backend.publish(stream, b'"warm-up"')
    assert cluster.leader(backend.names.queue(queue)) is first
    assert cluster.leader(backend.names.stream(stream)) is first

    confirmed: list[str] = []  # jobs whose enqueue returned
    processed: list[str] = []
    published: list[tuple[str, bytes]] = []  # (id, data) of publishes that returned an id
    followed: list[tuple[str, bytes]] = []
    counter = iter(range(1_000_000))

    def produce() -> None:
        payload = f'"job-{next(counter)}"'
        backend.enqueue(queue, payload.encode())
        confirmed.append(payload)

    def work() -> None:
        job = backend.reserve(queue, visibility_timeout=60, block=0.5)
        if job is not None:
            processed.append(job.payload.decode())
            backend.ack(job)

    def publish() -> None:
        data = f'"event-{next(counter)}"'.encode()
        published.append((backend.publish(stream, data), data))

    start = backend.last_id(stream) or "0"
    follow_stop = threading.Event()

    def follow() -> None:
        for batch in backend.follow(stream, start, stop=follow_stop, poll=0.5):
            followed.extend((m.id, m.data) for m in batch.messages)

    follower = threading.Thread(target=follow, name="follower", daemon=True)
    follower.start()
    loops = [Loop("producer", produce), Loop("worker", work), Loop("publisher", publish)]
    try:
        wait_for(lambda: len(processed) >= 50 and len(followed) >= 50, WAIT, "a running start")
        cluster.stop(first)
        at_stop = len(confirmed), len(published)
        survivors = {node.port for node in cluster.nodes if node is not first}
        assert cluster.wait_for_leader(backend.names.queue(queue), not_on=first).port in survivors
        # Each goes on by itself on a survivor.
        try:
            wait_for(
                lambda: len(confirmed) >= at_stop[0] + 50 and len(published) >= at_stop[1] + 50,
                WAIT,
                "enqueues and publishes confirmed after the stop",
            )
        except AssertionError as exc:
            state = {
                loop.thread.name: (loop.unavailable, loop.last_unavailable, loop.failure)
                for loop in loops
            }
            counts = (at_stop, len(confirmed), len(published), len(processed), len(followed))
            raise AssertionError(f"{exc}: {state} {counts}") from None
        producer, worker, publisher = loops
        producer.end()
        publisher.end()
        wait_for(lambda: set(confirmed) <= set(processed), WAIT, "every confirmed job processed")
        worker.end()
    finally:
        for loop in loops:
            loop.stop.set()
    last = published[-1][0]
    wait_for(
        lambda: any(i == last for i, _ in followed) or not follower.is_alive(),
        WAIT,
        "the follower to reach the last publish",
    )
    follow_stop.set()
    follower.join(WAIT)

    ids = [backend.id_key(i) for i, _ in followed]
    assert ids == sorted(set(ids)), "the follower got each message once, in order"
    assert set(published) <= set(followed), "every confirmed publish reached the follower"
    backend.close()
