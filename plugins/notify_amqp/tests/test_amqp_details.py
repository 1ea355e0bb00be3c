"""What the contract suite does not reach: RabbitMQ's own ways, checked on a real server."""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import amqp
import pytest

from notify_amqp import connection as amqp_connection
from notify_amqp import delays as amqp_delays
from notify_amqp import queues as amqp_queues
from notify_amqp import streams as amqp_streams
from notify_amqp.backend import AmqpBackend
from notifycore import ConfigurationError, InvalidStreamId
from notifycore.testing import wait_for


@pytest.fixture
def backend(rabbit_server: Any) -> Iterator[AmqpBackend]:
    b = AmqpBackend(rabbit_server.url, prefix=f"details-{uuid.uuid4().hex[:8]}.")
    try:
        yield b
    finally:
        b.close()


def _raw(rabbit_server: Any) -> amqp.Connection:
    connection = amqp.Connection(
        f"127.0.0.1:{rabbit_server.port}", userid="guest", password="guest"
    )
    connection.connect()
    return connection


def test_a_pickled_job_is_dead_lettered_unread(backend: AmqpBackend, rabbit_server: Any) -> None:
    backend.enqueue("q", b'{"first": true}')
    first = backend.reserve("q", visibility_timeout=30)
    assert first is not None and backend.ack(first)
    connection = _raw(rabbit_server)
    try:
        channel = connection.channel()
        channel.basic_publish(
            amqp.Message(
                pickle.dumps({"x": 1}),
                content_type="application/x-python-serialize",
                message_id="evil",
            ),
            exchange="",
            routing_key=backend.prefix + "q",
        )
    finally:
        connection.close()
    backend.enqueue("q", b'{"after": true}')
    job = backend.reserve("q", visibility_timeout=30, block=5)
    assert job is not None and job.payload == b'{"after": true}', "the pickle was not handed out"
    (letter,) = backend.dead_letters("q")
    assert letter.id == "evil"
    assert "application/x-python-serialize" in letter.error and "JSON only" in letter.error


def test_a_server_without_stream_queues_is_refused_at_once(backend: AmqpBackend) -> None:
    class Old:
        class connection:
            server_properties = {"version": b"3.8.27"}

        def release(self) -> None:
            pass

    with pytest.raises(ConfigurationError, match=r"RabbitMQ 3\.8\.27 .* no stream queues"):
        backend._check_server(Old())


def test_the_real_server_passes_the_check_and_declares_streams(backend: AmqpBackend) -> None:
    assert backend.publish("s", b"x") == backend.last_id("s")
    assert backend._checked is True


def test_a_url_that_is_not_amqp_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="amqp://"):
        AmqpBackend("redis://:secret@127.0.0.1:6379/0")


def test_ids_are_offsets_and_bad_ids_are_refused(backend: AmqpBackend) -> None:
    ids = backend.publish_many("s", [b"a", b"b"])
    assert [backend.id_key(i) for i in ids] == sorted(backend.id_key(i) for i in ids)
    with pytest.raises(InvalidStreamId):
        backend.read("s", "1700000000000-0")
    with pytest.raises(InvalidStreamId):
        backend.id_key("-1")


def test_a_publish_whose_connection_broke_after_sending_is_not_stored_twice(
    backend: AmqpBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.publish("s", b"warm up")  # connection and tail exist
    real_drain = amqp_connection.Link.drain
    broke = threading.Event()

    def drain(self: Any, timeout: float) -> bool:
        if not broke.is_set() and self.tails:
            broke.set()  # the message is on its way; now the connection "breaks"
            raise amqp.exceptions.RecoverableConnectionError("connection lost")
        return real_drain(self, timeout)

    monkeypatch.setattr(amqp_connection.Link, "drain", drain)
    new_id = backend.publish("s", b"only once")
    assert broke.is_set()
    messages = backend.read("s").messages
    assert [m.data for m in messages] == [b"warm up", b"only once"]
    assert messages[-1].id == new_id


def test_append_is_confirmed_without_a_tail_and_followed_like_a_publish(
    backend: AmqpBackend,
) -> None:
    """``append`` (what PushConsumer uses) waits for RabbitMQ's confirm, not for its
    message to come back: no tail consumer is opened for it."""
    backend.append("s", b"one")
    link = backend._link()
    assert link.tails == {}, "append opened a tail consumer"
    assert link.confirm_seq == link.counts.confirmed == 1
    first = backend.publish("s", b"two")  # a publish that needs its id still has its tail
    assert list(link.tails) == [backend.names.stream("s")]
    backend.append("s", b"three")
    messages = backend.read("s").messages
    assert [m.data for m in messages] == [b"one", b"two", b"three"]
    assert messages[1].id == first


def test_an_append_whose_confirm_was_lost_is_not_stored_twice(
    backend: AmqpBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection breaks after the message went out, before its confirm was read: the
    retry finds the message stored and does not send it again."""
    backend.append("s", b"warm up")  # connection and stream exist
    other = AmqpBackend(backend.url, prefix=backend.prefix)
    real_drain = amqp_connection.Link.drain
    broke = threading.Event()

    def drain(self: Any, timeout: float) -> bool:
        if self.backend is backend and not broke.is_set():
            # Sent; once another connection sees it stored, the connection "breaks".
            wait_for(
                lambda: [m.data for m in other.read("s").messages][-1:] == [b"only once"],
                30,
                "the append to be stored",
            )
            broke.set()
            raise amqp.exceptions.RecoverableConnectionError("connection lost")
        return real_drain(self, timeout)

    monkeypatch.setattr(amqp_connection.Link, "drain", drain)
    try:
        backend.append("s", b"only once")
    finally:
        other.close()
    assert broke.is_set()
    assert [m.data for m in backend.read("s").messages] == [b"warm up", b"only once"]


def test_an_append_retried_on_a_busy_stream_looks_through_to_its_end(
    backend: AmqpBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry's look for its message reads to the newest message the stream had, however
    busy the stream: a look cut by time (``READ_CAP``, about 2 s) stopped short of the
    message on a stream that never went quiet, and sent it again. Here another connection
    writes all along, the cap is 0 s, and the confirm is "lost" after the message was
    stored."""
    before = backend.publish("s", b"before")
    writer = AmqpBackend(backend.url, prefix=backend.prefix)
    written: list[int] = []
    writing = threading.Thread(
        target=lambda: written.extend(
            len(writer.publish_many("s", [b"w%d" % n for n in range(500)])) for _ in range(60)
        )
    )
    real_publish = amqp_connection.Link.publish_confirmed
    lost = threading.Event()

    def publish_confirmed(self: Any, items: list[tuple[str, Any]]) -> None:
        real_publish(self, items)
        if self.backend is backend and not lost.is_set():
            lost.set()  # stored and confirmed; the connection "breaks" before we see it
            raise amqp.exceptions.RecoverableConnectionError("connection lost")

    monkeypatch.setattr(amqp_connection.Link, "publish_confirmed", publish_confirmed)
    monkeypatch.setattr(amqp_streams, "READ_CAP", 0.0)
    writing.start()
    try:
        wait_for(lambda: len(written) >= 10, 60, "the stream to be busy")
        backend.append("s", b"only once")
    finally:
        writing.join(120)
        writer.close()
    assert lost.is_set() and sum(written) == 30_000
    # Now count it all: one read ends where the stream seemed quiet for a moment (a busy
    # machine can pause the deliveries), so read on to the newest message.
    newest, after, data = backend.last_id("s"), before, []
    for _ in range(1000):
        if after == newest:
            break
        batch = backend.read("s", after, block=10)
        assert batch.messages and not batch.reset
        data += [m.data for m in batch.messages]
        after = batch.messages[-1].id
    assert len(data) == 30_001 and data.count(b"only once") == 1


def test_a_publish_whose_tail_hangs_gets_its_id_from_a_new_tail(
    backend: AmqpBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tail consumer that stops delivering (as one does on RabbitMQ 3.10 when its node's
    member of the stream restarts after a leader moved) is replaced: publishes still get
    their ids, instead of timing out on it for good."""
    monkeypatch.setattr(amqp_streams, "TAIL_STALL", 0.5)
    first = backend.publish("s", b"warm up")  # connection and tail exist
    link = backend._link()
    (tail,) = link.tails.values()
    for tag in list(tail.channel.callbacks):  # the consumer says nothing from now on
        tail.channel.basic_cancel(tag)
    ids = [backend.publish("s", f"after {n}".encode()) for n in range(3)]
    assert link.tails and tail not in link.tails.values(), "the silent tail was replaced"
    messages = backend.read("s").messages
    assert [m.data for m in messages] == [b"warm up", b"after 0", b"after 1", b"after 2"]
    assert [m.id for m in messages] == [first, *ids]


def test_a_follower_whose_consumer_hangs_attaches_again(
    backend: AmqpBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower's consumer that delivers nothing while the stream goes on (it hung, as
    consumers do on RabbitMQ 3.10 when a stream's leader moved) is attached again, at the
    follower's position: nothing missed, nothing twice."""
    monkeypatch.setattr(amqp_streams, "FOLLOW_CHECK", 0.5)
    start = backend.publish("s", b"before")
    real_consume = amqp.Channel.basic_consume
    hung = threading.Event()

    def basic_consume(self: Any, queue: str, *args: Any, **kwargs: Any) -> Any:
        tag = real_consume(self, queue, *args, **kwargs)
        callback = kwargs.get("callback")
        if not hung.is_set() and isinstance(getattr(callback, "__self__", None), list):
            hung.set()  # the follower's own consumer (it collects into a list) goes silent
            self.basic_cancel(tag)
        return tag

    monkeypatch.setattr(amqp.Channel, "basic_consume", basic_consume)
    got: list[tuple[str, bytes]] = []
    stop = threading.Event()

    def follow() -> None:
        for batch in backend.follow("s", start, stop=stop, poll=0.1):
            got.extend((m.id, m.data) for m in batch.messages)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        wait_for(hung.is_set, 30, "the follower's consumer")
        ids = [backend.publish("s", b"one"), backend.publish("s", b"two")]
        wait_for(lambda: len(got) >= 2 or not follower.is_alive(), 60, "both messages")
    finally:
        stop.set()
        follower.join(30)
    assert got == [(ids[0], b"one"), (ids[1], b"two")]


def test_follow_after_retention_dropped_the_cursor_reports_a_reset(rabbit_server: Any) -> None:
    small = AmqpBackend(
        rabbit_server.url,
        prefix=f"ret-{uuid.uuid4().hex[:8]}.",
        stream_max_bytes=6000,
        stream_segment_bytes=1000,
    )
    stop = threading.Event()
    try:
        ids = [small.publish("s", f"m{i}".encode()) for i in range(60)]
        kept = small.read("s").messages
        assert kept and len(kept) < 60 and kept[-1].id == ids[-1]
        batches: list[Any] = []

        def follow() -> None:
            for batch in small.follow("s", ids[0], stop=stop, poll=0.1):
                batches.append(batch)
                if batch.messages and batch.messages[-1].id == ids[-1]:
                    return

        thread = threading.Thread(target=follow)
        thread.start()
        wait_for(lambda: not thread.is_alive(), 60, "the follower to reach the last message")
        assert batches[0].reset is True
        assert not any(b.reset for b in batches[1:])
        assert [m.id for b in batches for m in b.messages] == [m.id for m in kept]
    finally:
        stop.set()
        small.close()


def test_a_slow_delivery_of_the_readers_own_message_is_not_a_reset(
    backend: AmqpBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read attaches at the reader's own message and waits 4 x read_quiet for it. On a busy
    # machine RabbitMQ took longer (CI: a browser's Last-Event-ID resume got a reset frame and
    # the stream again from the oldest). Here that first wait is far below a round trip, so
    # the message always comes after it; the stream holds it, so it is no reset.
    attach = amqp_streams.AmqpStreams._attach
    late: list[int] = []

    def first_wait_too_short(self: Any, link: Any, name: str, start: Any, **options: Any) -> Any:
        if options.get("after") and options.get("first_within") is None:
            late.append(options["after"])
            quiet, self.read_quiet = self.read_quiet, 1e-6
            try:
                return attach(self, link, name, start, **options)
            finally:
                self.read_quiet = quiet
        return attach(self, link, name, start, **options)

    ids = backend.publish_many("s", [b"a", b"b", b"c"])
    monkeypatch.setattr(amqp_streams.AmqpStreams, "_attach", first_wait_too_short)
    for n, anchor in enumerate(ids):
        batch = backend.read("s", anchor)
        assert batch.reset is False, f"a reset after {anchor}, which the stream holds"
        later = ids[n + 1 :]  # a read may end early (read_quiet), never out of order
        assert [m.id for m in batch.messages] == later[: len(batch.messages)]
    assert len(late) == len(ids), "each read's first wait was too short"
    unknown = str(int(ids[-1]) + 1000)
    batch = backend.read("s", unknown)
    assert batch.reset is True, "an id past the newest is still one the stream never gave"
    assert [m.id for m in batch.messages] == ids


def test_an_id_the_stream_never_held_is_a_reset(backend: AmqpBackend) -> None:
    ids = backend.publish_many("s", [b"a", b"b"])
    unknown = str(int(ids[-1]) + 1000)
    batch = backend.read("s", unknown)
    # A reset starts from the oldest message kept, as on every backend (issue 13).
    assert batch.reset is True and [m.id for m in batch.messages] == ids
    assert backend.read("s", ids[-1]).reset is False


class _StoppedClock:
    """``time`` for the backend, with a wall clock that stands still (monotonic time runs)."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_delayed_jobs_wait_for_their_whole_delay_and_are_counted(
    backend: AmqpBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _StoppedClock()
    monkeypatch.setattr(amqp_delays, "time", clock)  # where delays are set
    monkeypatch.setattr(amqp_queues, "time", clock)  # and where they are checked
    backend.enqueue("q", b"{}", delay=0.3)  # a 250 ms bucket, then round again for the rest
    backend.enqueue("later", b"{}", delay=120)
    assert backend.queue_length("q") == 1
    assert backend.queue_length("later") == 1
    # While the backend's clock says the delay has not passed, every time the bucket brings
    # the job back it goes round again: it is never handed out early.
    passes = []
    real_pass_on = AmqpBackend._pass_on

    def pass_on(link: Any, channel: Any, tag: int, items: list[tuple[str, Any]]) -> None:
        passes.append(items[0][0])
        real_pass_on(link, channel, tag, items)

    monkeypatch.setattr(AmqpBackend, "_pass_on", staticmethod(pass_on))
    got: list[Any] = []

    def came_back_twice() -> bool:
        job = backend.reserve("q", visibility_timeout=30, block=0.2)
        if job is not None:
            got.append(job)
        return len(passes) >= 2 or bool(got)

    wait_for(came_back_twice, 60, "the delay bucket to bring the job back twice")
    assert not got, "a delayed job was handed out before its time"
    assert all(".delay.250" in queue for queue in passes)
    clock.now += 0.3  # its delay is over: the next time the bucket brings it back, it is due
    job = backend.reserve("q", visibility_timeout=30, block=60)
    assert job is not None
    assert job.attempts == 1
    assert backend.ack(job) is True


def test_a_job_whose_connection_closed_comes_back_with_the_try_counted(
    rabbit_server: Any,
) -> None:
    prefix = f"drop-{uuid.uuid4().hex[:8]}."
    first = AmqpBackend(rabbit_server.url, prefix=prefix)
    second = AmqpBackend(rabbit_server.url, prefix=prefix)
    try:
        first.enqueue("q", b"{}")
        job = first.reserve("q", visibility_timeout=300)
        assert job is not None and job.attempts == 1
        first.close()  # as if the worker died: RabbitMQ takes the job back at once
        again = second.reserve("q", visibility_timeout=300, block=5)
        assert again is not None and again.id == job.id
        assert again.attempts == 2
        assert second.ack(again) is True
    finally:
        second.close()


def test_prefetch_limits_what_a_waiting_consumer_holds(rabbit_server: Any) -> None:
    prefix = f"prefetch-{uuid.uuid4().hex[:8]}."
    holder = AmqpBackend(rabbit_server.url, prefix=prefix, prefetch=1)
    other = AmqpBackend(rabbit_server.url, prefix=prefix)
    try:
        assert holder.reserve("q", visibility_timeout=30, block=0.1) is None  # now consuming
        other.enqueue_many("q", [b"1", b"2", b"3"])
        job = holder.reserve("q", visibility_timeout=30, block=5)
        assert job is not None
        # holder holds one job (and at most one more in advance); the rest is for others.
        taken = other.reserve_many("q", 3, visibility_timeout=30)
        assert len(taken) >= 1
        assert len(taken) + 1 <= 3
    finally:
        holder.close()
        other.close()


def test_dedupe_marks_are_shared_between_processes(rabbit_server: Any) -> None:
    prefix = f"done-{uuid.uuid4().hex[:8]}."
    a = AmqpBackend(rabbit_server.url, prefix=prefix)
    b = AmqpBackend(rabbit_server.url, prefix=prefix)
    try:
        assert a.kv_set_if_absent("k", b"1", ttl=60) is True
        assert b.kv_exists("k") is True
        assert b.kv_set_if_absent("k", b"1", ttl=60) is False
        assert b.kv_exists("other") is False
        assert b.kv_exists("k") is True, "a miss (404) on one key leaves the channel usable"
    finally:
        a.close()
        b.close()


def _delete_queue(rabbit_server: Any, name: str) -> None:
    connection = _raw(rabbit_server)
    try:
        connection.channel().queue_delete(name)
    finally:
        connection.close()


def test_a_queue_deleted_behind_our_back_is_declared_again_and_loses_nothing(
    backend: AmqpBackend, rabbit_server: Any
) -> None:
    backend.enqueue("q", b"{}")
    _delete_queue(rabbit_server, backend.prefix + "q")  # an operator, a broker reset...
    job_id = backend.enqueue("q", b'{"kept": true}')
    job = backend.reserve("q", visibility_timeout=30, block=5)
    assert job is not None and job.id == job_id and job.payload == b'{"kept": true}'
    assert backend.ack(job) is True
    backend.publish("s", b"one")
    _delete_queue(rabbit_server, backend.prefix + "stream.s")
    new_id = backend.publish("s", b"two")
    assert [(m.id, m.data) for m in backend.read("s").messages] == [(new_id, b"two")]


def test_reads_end_on_a_stream_that_never_goes_quiet(rabbit_server: Any) -> None:
    prefix = f"busy-{uuid.uuid4().hex[:8]}."
    publisher = AmqpBackend(rabbit_server.url, prefix=prefix)
    reader = AmqpBackend(rabbit_server.url, prefix=prefix)
    stop = threading.Event()
    feeding: list[int] = []

    def publish() -> None:
        for _i in range(3000):  # bounded: about half a minute at most
            if stop.is_set():
                return
            publisher.publish_many("busy", [b"x"] * 5)
            feeding.append(_i)
            stop.wait(0.005)  # pacing, not a wait: the stream stays busy without flooding it

    feeder = threading.Thread(target=publish)
    results: dict[str, Any] = {}

    def read() -> None:
        results["last"] = reader.last_id("busy")
        results["read"] = reader.read("busy")

    feeder.start()
    try:
        wait_for(lambda: bool(feeding), 60, "the stream to be busy")
        worker = threading.Thread(target=read)
        worker.start()
        worker.join(120)
        assert not worker.is_alive(), "a read on a busy stream must end"
    finally:
        stop.set()
        feeder.join(30)
        publisher.close()
        reader.close()
    assert results["last"] is not None and results["read"].messages


def test_an_existing_stream_with_other_retention_is_used_and_keeps_our_jobs(
    rabbit_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"args-{uuid.uuid4().hex[:8]}."
    first = AmqpBackend(rabbit_server.url, prefix=prefix, stream_max_bytes=5_000_000)
    second = AmqpBackend(rabbit_server.url, prefix=prefix, stream_max_bytes=9_000_000)
    try:
        first.publish("s", b"old")
        second.enqueue("q", b"{}")
        job = second.reserve("q", visibility_timeout=30)
        assert job is not None
        new_id = second.publish("s", b"new")  # declared with other arguments
        assert "exists with other arguments" in caplog.text
        assert second.read("s").messages[-1].id == new_id
        assert second.ack(job) is True, "the job in hand survived the refused declaration"
    finally:
        first.close()
        second.close()


def test_a_thread_that_ends_gives_back_the_jobs_its_consumer_held(rabbit_server: Any) -> None:
    prefix = f"ends-{uuid.uuid4().hex[:8]}."
    holder = AmqpBackend(rabbit_server.url, prefix=prefix, prefetch=3)
    other = AmqpBackend(rabbit_server.url, prefix=prefix)
    try:
        holder.enqueue_many("q", [b"1", b"2", b"3"])

        def take_one() -> None:
            job = holder.reserve("q", visibility_timeout=30, block=5)  # a consumer, prefetch 4
            assert job is not None
            holder.ack(job)

        thread = threading.Thread(target=take_one)
        thread.start()
        thread.join(60)
        assert not thread.is_alive()
        got = []

        def take() -> bool:
            job = other.reserve("q", visibility_timeout=30, block=0.5)
            if job is not None:
                got.append(job.payload)
                other.ack(job)
            return len(got) >= 2

        wait_for(take, 60, "jobs prefetched by an ended thread to come back")
        assert len(got) == 2
    finally:
        holder.close()
        other.close()


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:s3cret@h1:5672//;amqp://guest:s3cret@h2:5672//",
        "amqp://guest:pa#s3cret@host:5672//",
        "amqp://guest:pa/s3cret@[::1]:5672//",
    ],
)
def test_passwords_never_show(url: str) -> None:
    shown = repr(AmqpBackend(url))
    assert "s3cret" not in shown and "***" in shown
