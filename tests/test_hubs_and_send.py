from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notifycore import (
    ConfigurationError,
    Consumer,
    ConsumerError,
    Event,
    InvalidEvent,
    LogConsumer,
    Notifications,
    PushConsumer,
    Status,
    UnknownHub,
    hookimpl,
    user_stream,
)
from notifycore.backends.memory import MemoryBackend
from notifycore.delivery import Delivery
from notifycore.filters import Always, BeforeDate, Field, Not, Predicate, WithEventType, WithTag
from notifycore.plugins import Plugins, get_plugins
from notifycore.testing import capture_events

# Each test runs with the JSON accelerator (orjson) and without it.
pytestmark = pytest.mark.usefixtures("json_paths")

Make = Callable[..., Notifications]


def event(event_type: str = "test", **kw: Any) -> Event:
    kw.setdefault("title", "title")
    kw.setdefault("body", "body")
    return Event(None, event_type, **kw)


# -- hubs -------------------------------------------------------------------------------------


def test_hub_ids_are_derived_from_labels(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("TestHub")
    assert hub.hub_id == "event-hub-TestHub"
    assert hub.label == "TestHub"
    assert n.get_hub("TestHub") is hub
    assert n.get_hub("event-hub-TestHub") is hub
    assert dict(n.hubs) == {"TestHub": hub}


def test_duplicate_and_bad_hub_labels_are_clear_errors(make_notifications: Make) -> None:
    n = make_notifications()
    n.create_hub("A")
    with pytest.raises(ConfigurationError, match="already exists"):
        n.create_hub("A")
    for bad in ("", "has space", "new\nline", 5):
        with pytest.raises(ConfigurationError, match="hub label"):
            n.create_hub(bad)  # type: ignore[arg-type]


def test_get_and_remove_hub(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("Gone")
    got: list[Event] = []
    hub.register_consumer(got.append, name="collect")
    with pytest.raises(UnknownHub, match="'Nope'"):
        n.get_hub("Nope")
    with pytest.raises(KeyError):
        n.get_hub("Nope")
    assert n.remove_hub("event-hub-Gone") is hub
    assert "Gone" not in n.hubs
    result = n.send(event())
    assert got == [] and result.hubs == []


def test_filter_by_replaces_and_checks_its_argument(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    assert hub.filter_by(WithEventType("a")) is hub
    hub.filter_by(WithEventType("b"))
    assert n.send(event("a")).hubs == []
    assert n.send(event("b")).hubs == ["H"]
    with pytest.raises(TypeError):
        hub.filter_by(lambda e: True)  # type: ignore[arg-type]


def test_the_readme_quick_start(make_notifications: Make, tmp_path: Path) -> None:
    notifications = make_notifications()
    hub = notifications.create_hub("TestHub")
    hub.filter_by(WithEventType("test") & Not(BeforeDate(datetime.now(UTC))))
    written: list[Event] = []

    @hub.register_consumer(name="app.write_to_file")
    def write_to_file(e: Event) -> None:
        written.append(e)

    log = tmp_path / "events.log"
    hub.register_consumer(LogConsumer(log))
    passing = Event(None, "test", "This event will pass the filter", "body", sender="system")
    failing = Event(None, "other", "This one will not", "body", sender="system")
    result = notifications.send(passing)
    assert notifications.send(failing).hubs == []
    assert result.hubs == ["TestHub"]
    assert [(o.consumer, o.status) for o in result.outcomes] == [
        ("app.write_to_file", Status.RAN),
        ("notifycore.consumers.LogConsumer", Status.RAN),
    ]
    assert written == [passing]
    assert [json.loads(line)["event_id"] for line in log.read_text().splitlines()] == [
        passing.event_id
    ]
    # send() also takes the JSON and the dict forms
    assert notifications.send(passing.to_json()).hubs == ["TestHub"]
    assert notifications.send(passing.to_dict()).hubs == ["TestHub"]
    assert len(written) == 3


def test_send_rejects_bad_input_without_delivering(make_notifications: Make) -> None:
    n = make_notifications(MAX_EVENT_SIZE=500)
    got: list[Event] = []
    n.create_hub("H").register_consumer(got.append, name="c")
    with pytest.raises(InvalidEvent, match="not valid JSON"):
        n.send("{broken")
    with pytest.raises(InvalidEvent, match="event_type"):
        n.send({"title": "no type"})
    with pytest.raises(InvalidEvent, match="over the limit of 500"):
        n.send(event(body="x" * 600))
    with pytest.raises(InvalidEvent, match="over the limit of 500"):
        n.send(event(body="x" * 600).to_json())
    with pytest.raises(InvalidEvent, match="takes an Event"):
        n.send(42)  # type: ignore[arg-type]
    assert got == []


# -- registration -----------------------------------------------------------------------------


class Recorder(Consumer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def consume(self, event: Event) -> None:
        self.calls.append(("consume", event.event_id))

    def before_consume(self, event: Event) -> None:
        self.calls.append(("before", event.event_id))

    def after_consume(self, event: Event) -> None:
        self.calls.append(("after", event.event_id))

    def on_error(self, event: Event, error: BaseException) -> None:
        self.calls.append(("error", str(error)))


def collector() -> tuple[list[Event], Callable[[Event], None]]:
    got: list[Event] = []
    return got, got.append


def test_register_forms_and_default_names(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")

    @hub.register_consumer
    def bare(e: Event) -> None: ...

    @hub.register_consumer(name="explicit")
    def decorated(e: Event) -> None: ...

    instance = Recorder()
    returned = hub.register_consumer(instance)
    assert returned is instance
    assert bare.__name__ == "bare" and decorated.__name__ == "decorated"
    assert list(hub.consumers) == [
        f"{__name__}.test_register_forms_and_default_names.<locals>.bare",
        "explicit",
        f"{__name__}.Recorder",
    ]
    assert hub.is_registered(bare) and hub.is_registered("explicit")
    assert hub.is_registered(instance) and not hub.is_registered(Recorder())


def test_two_instances_of_a_class_need_two_names(make_notifications: Make) -> None:
    hub = make_notifications().create_hub("H")
    hub.register_consumer(Recorder())
    with pytest.raises(ConfigurationError, match="already has a consumer named"):
        hub.register_consumer(Recorder())
    hub.register_consumer(Recorder(), name="second")
    assert len(hub.consumers) == 2


def test_registration_errors(make_notifications: Make) -> None:
    hub = make_notifications().create_hub("H")
    with pytest.raises(TypeError, match="callable"):
        hub.register_consumer(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="instance"):
        hub.register_consumer(Recorder)
    with pytest.raises(ConfigurationError, match="mode"):
        hub.register_consumer(print, mode="later")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="max_tries"):
        hub.register_consumer(print, max_tries=0)
    with pytest.raises(TypeError, match="filter"):
        hub.register_consumer(print, filter="type")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="has no consumer"):
        hub.deregister_consumer("never-registered")
    assert hub.consumers == {}


def test_deregistration_stops_delivery(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    got, fn = collector()
    other, other_fn = collector()
    hub.register_consumer(fn, name="first")
    hub.register_consumer(other_fn, name="second")
    n.send(event())
    hub.deregister_consumer(fn)
    assert not hub.is_registered("first")
    n.send(event())
    hub.deregister_consumer("second")
    n.send(event())
    assert (len(got), len(other)) == (1, 2)


def test_consumer_hooks_run_in_order(make_notifications: Make) -> None:
    n = make_notifications()
    recorder = Recorder()
    n.create_hub("H").register_consumer(recorder)
    e = event()
    n.send(e)
    assert recorder.calls == [
        ("before", e.event_id),
        ("consume", e.event_id),
        ("after", e.event_id),
    ]


def test_one_failing_consumer_never_stops_the_others(
    make_notifications: Make, caplog: pytest.LogCaptureFixture
) -> None:
    n = make_notifications()
    first, second = n.create_hub("First"), n.create_hub("Second")
    got_a, fn_a = collector()
    got_b, fn_b = collector()

    class Broken(Recorder):
        def consume(self, event: Event) -> None:
            raise RuntimeError("disk full")

    broken = Broken()
    first.register_consumer(fn_a, name="a")
    first.register_consumer(broken, name="broken")
    first.register_consumer(fn_b, name="b")
    got_c, fn_c = collector()
    second.register_consumer(fn_c, name="c")
    e = event()
    with caplog.at_level(logging.ERROR, logger="notifycore"):
        result = n.send(e)
    assert got_a == got_b == got_c == [e]
    assert not result.ok
    failed = result.outcome("First", "broken")
    assert failed.status is Status.FAILED and isinstance(failed.error, RuntimeError)
    assert [o.consumer for o in result.failed] == ["broken"]
    assert broken.calls == [("before", e.event_id), ("error", "disk full")]
    assert "consumer broken of hub First failed" in caplog.text and "disk full" in caplog.text
    assert n.stats["failed"] == 1


def test_error_hook_receives_failures() -> None:
    seen: list[tuple[str, str, str]] = []

    class Plugin:
        @hookimpl
        def notifycore_consumer_error(
            self, hub: Any, consumer: str, event: Event, error: BaseException
        ) -> None:
            seen.append((hub.label, consumer, str(error)))

    plugins = get_plugins()
    plugins.register(Plugin(), name="error-spy")
    try:
        n = Notifications(config={"BACKEND": "memory"}, environ={})
        hub = n.create_hub("H")

        @hub.register_consumer(name="bad")
        def bad(e: Event) -> None:
            raise ValueError("nope")

        n.send(event())
    finally:
        plugins.unregister(name="error-spy")
    assert seen == [("H", "bad", "nope")]


def test_raise_policy_raises_after_every_consumer_ran(make_notifications: Make) -> None:
    n = make_notifications(CONSUMER_ERRORS="raise")
    hub = n.create_hub("H")
    got, fn = collector()

    @hub.register_consumer(name="bad")
    def bad(e: Event) -> None:
        raise KeyError("missing")

    hub.register_consumer(fn, name="good")
    with pytest.raises(ConsumerError, match="H/bad") as info:
        n.send(event())
    assert len(got) == 1
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.result.outcome("H", "good").status is Status.RAN


def test_consumer_filters_narrow_delivery(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    urgent, fn = collector()
    hub.register_consumer(fn, name="urgent", filter=WithTag("urgent"))
    result = n.send(event(tags=["normal"]))
    assert result.outcome("H", "urgent").status is Status.FILTERED
    n.send(event(tags=["urgent"]))
    assert [e.tags for e in urgent] == [("urgent",)]


def test_expired_events_are_dropped_and_counted(make_notifications: Make) -> None:
    n = make_notifications()
    got, fn = collector()
    n.create_hub("H").register_consumer(fn, name="c")
    past = datetime.now(UTC) - timedelta(seconds=1)
    result = n.send(event(expiration_datetime=past))
    assert result.expired
    assert result.outcome("H", "c").status is Status.EXPIRED
    assert got == []
    assert n.stats["expired"] == 1
    n.send(event(expiration_datetime=datetime.now(UTC) + timedelta(hours=1)))
    assert len(got) == 1 and n.stats["expired"] == 1


# -- async consumers --------------------------------------------------------------------------


def test_async_consumers_run_from_sync_send_and_from_asend(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    seen: list[tuple[str, bool]] = []

    @hub.register_consumer(name="async")
    async def on_event(e: Event) -> None:
        await asyncio.sleep(0)
        seen.append((e.title, asyncio.get_running_loop() is not None))

    class AsyncConsumer(Consumer):
        async def consume(self, event: Event) -> None:
            await asyncio.sleep(0)
            seen.append(("class:" + event.title, True))

    hub.register_consumer(AsyncConsumer())
    n.send(Event(None, "t", "sync"))

    async def main() -> None:
        result = await n.asend(Event(None, "t", "async"))
        assert result.ok

    asyncio.run(main())
    assert seen == [("sync", True), ("class:sync", True), ("async", True), ("class:async", True)]


def test_async_consumer_failure_is_isolated(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    got, fn = collector()

    @hub.register_consumer(name="bad")
    async def bad(e: Event) -> None:
        raise RuntimeError("async boom")

    hub.register_consumer(fn, name="good")
    result = asyncio.run(n.asend(event()))
    assert str(result.outcome("H", "bad").error) == "async boom"
    assert len(got) == 1
    assert n.send(event()).outcome("H", "bad").status is Status.FAILED


# -- built-in consumers -----------------------------------------------------------------------


def test_log_consumer_writes_json_lines_to_a_logger(make_notifications: Make) -> None:
    n = make_notifications()
    logger = logging.getLogger("test.events")
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = ListHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        n.create_hub("H").register_consumer(LogConsumer(logger))
        e = event(body="multi\nline")
        n.send(e)
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and "\n" not in records[0]
    assert Event.from_json(records[0]) == e


def test_log_consumer_file_is_shared_safely_by_threads(
    make_notifications: Make, tmp_path: Path
) -> None:
    n = make_notifications()
    path = tmp_path / "log.jsonl"
    n.create_hub("H").register_consumer(LogConsumer(str(path)))

    def send_many() -> None:
        for _ in range(50):
            n.send(event(body="x" * 200))

    threads = [threading.Thread(target=send_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert all(Event.from_json(line).body == "x" * 200 for line in lines)
    with pytest.raises(TypeError):
        LogConsumer(42)  # type: ignore[arg-type]


def test_push_consumer_publishes_to_hub_and_user_streams(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("Chat")
    hub.register_consumer(PushConsumer())
    public = event()
    n.send(public)
    e = event(recipients=["alice", "bob", "alice"])
    n.send(e)
    backend = n.backend
    hub_messages = backend.read("event-hub-Chat").messages
    assert [m.data for m in hub_messages] == [public.to_json_bytes()], "private: not on the hub"
    for user in ("alice", "bob"):
        assert [Event.from_json(m.data) for m in backend.read(user_stream(user)).messages] == [e]
    assert backend.read(user_stream("carol")).messages == []
    asyncio.run(n.asend(event(recipients=["bob"])))
    assert len(backend.read(user_stream("bob")).messages) == 2


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions ``asyncio.to_thread`` runs, in order."""
    names: list[str] = []
    real_to_thread = asyncio.to_thread

    async def counted(function: Callable[..., Any], /, *args: Any) -> Any:
        names.append(getattr(function, "__name__", "?"))
        return await real_to_thread(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    return names


def test_asend_publishes_to_every_recipient_stream_of_a_thread_backend(
    make_notifications: Make, tmp_path: Path, hops: list[str]
) -> None:
    # SQLite's apublish is its publish in a thread: the streams of one event share one thread.
    n = make_notifications(BACKEND="sqlite", BACKEND_URL=f"sqlite:///{tmp_path / 'n.db'}")
    n.create_hub("Chat").register_consumer(PushConsumer(broadcast_private=True))
    e = event(recipients=["alice", "bob", "carol"])
    asyncio.run(n.asend(e))
    backend = n.backend
    for stream in ("event-hub-Chat", *(user_stream(u) for u in ("alice", "bob", "carol"))):
        assert [Event.from_json(m.data) for m in backend.read(stream).messages] == [e], stream
    assert hops == ["_publish"], "four streams, one thread"
    asyncio.run(n.asend(event()))  # one stream: the backend's own apublish
    assert hops == ["_publish", "publish"]
    assert len(backend.read("event-hub-Chat").messages) == 2


def test_push_consumer_appends_and_never_waits_for_ids(hops: list[str]) -> None:
    """PushConsumer has no use for a message's id: it stores with ``append`` (RabbitMQ then
    waits for a confirm only), synchronously and from ``asend``, one stream or several."""

    class Appending(MemoryBackend):
        def publish(self, stream: str, data: bytes) -> str:
            raise AssertionError("PushConsumer asked for an id")

        def append(self, stream: str, data: bytes) -> None:
            appended.append(stream)
            self._append(stream, (data,))

    appended: list[str] = []
    n = Notifications(backend=Appending(), environ={})
    n.create_hub("Chat").register_consumer(PushConsumer(broadcast_private=True))
    n.send(event(recipients=["alice"]))
    assert appended == ["event-hub-Chat", user_stream("alice")]
    asyncio.run(n.asend(event(recipients=["bob", "carol"])))  # three streams: one thread
    asyncio.run(n.asend(event()))  # one stream: append in a thread
    assert hops == ["_publish", "append"]
    hub, bob, carol = "event-hub-Chat", user_stream("bob"), user_stream("carol")
    assert appended[2:] == [hub, bob, carol, hub]
    assert len(n.backend.read("event-hub-Chat").messages) == 3


class _FastAppend(MemoryBackend):
    """A backend with an append of its own (as RabbitMQ's), which a subclass may not know."""

    def append(self, stream: str, data: bytes) -> None:
        self._append(stream, (data,))


class _SigningMixin:
    def publish(self, stream: str, data: bytes) -> str:
        return super().publish(stream, b"signed:" + data)  # type: ignore[misc,no-any-return]

    async def apublish(self, stream: str, data: bytes) -> str:
        return await super().apublish(stream, b"signed:" + data)  # type: ignore[misc,no-any-return]


class _Signed(_FastAppend):
    def publish(self, stream: str, data: bytes) -> str:
        return super().publish(stream, b"signed:" + data)

    async def apublish(self, stream: str, data: bytes) -> str:
        return await super().apublish(stream, b"signed:" + data)


class _SignedByMixin(_SigningMixin, _FastAppend):
    pass


@pytest.mark.parametrize("backend_type", [_Signed, _SignedByMixin])
def test_a_subclass_that_overrides_publish_is_not_bypassed_by_an_inherited_append(
    backend_type: type[MemoryBackend],
) -> None:
    """PushConsumer stores with append; a subclass that changes what publish stores, and
    not append, gets the default append (its publish), not the one its parent wrote."""
    n = Notifications(backend=backend_type(), environ={})
    n.create_hub("Chat").register_consumer(PushConsumer(broadcast_private=True))
    n.send(event())
    asyncio.run(n.asend(event()))  # one stream: aappend
    asyncio.run(n.asend(event(recipients=["bob"])))  # two streams
    stored = [
        m.data for s in ("event-hub-Chat", user_stream("bob")) for m in n.backend.read(s).messages
    ]
    assert len(stored) == 4 and all(d.startswith(b"signed:") for d in stored), stored
    plain = _FastAppend()
    assert type(plain).append is _FastAppend.append, "an append of the class's own is kept"


class SyncBeforeSend:
    @hookimpl
    def notifycore_before_send(self, notifications: Notifications, event: Event) -> None:
        pass


class AsyncBeforeSend:
    @hookimpl
    async def notifycore_before_send(self, notifications: Notifications, event: Event) -> None:
        pass


def test_a_delivery_is_awaitable_when_nothing_it_runs_blocks() -> None:
    plugins = Plugins()  # none of the plugins installed here (a test one has a sync hook)
    delivery = Delivery(plugins)
    delivery.configure({"DEFAULT_QUEUE": "q", "CONSUMER_ERRORS": "log"}, MemoryBackend())
    assert delivery.awaitable(), "no hub: nothing to block"
    hub = delivery.create_hub("H")
    hub.register_consumer(PushConsumer())  # aconsume
    hub.register_consumer(lambda e: None, name="queued", mode="queued")  # only enqueued

    @hub.register_consumer(name="async")
    async def on_event(e: Event) -> None:
        pass

    assert delivery.awaitable()
    plugin = SyncBeforeSend()
    plugins.register(plugin)
    assert not delivery.awaitable(), "a sync hook runs on every send"
    plugins.unregister(plugin)
    plugins.register(AsyncBeforeSend())
    assert delivery.awaitable(), "an async hook is awaited"

    class Hooked(Consumer):
        async def consume(self, event: Event) -> None:
            pass

        def before_consume(self, event: Event) -> None:
            pass

    other = delivery.create_hub("Other")
    other.register_consumer(Hooked(), name="hooked")
    assert not delivery.awaitable(), "a sync before_consume runs in the sender"
    other.deregister_consumer("hooked")
    assert delivery.awaitable()
    other.register_consumer(lambda e: None, name="sync")
    assert not delivery.awaitable(), "a sync inline consumer, on any hub"
    other.deregister_consumer("sync")

    class Reporting(Consumer):
        async def consume(self, event: Event) -> None:
            pass

        def on_error(self, event: Event, error: BaseException) -> None:
            pass

    other.register_consumer(Reporting(), name="reporting")
    assert not delivery.awaitable(), "a sync on_error runs in the sender"
    other.deregister_consumer("reporting")
    assert delivery.awaitable()
    # Filters that call the application's code (a lookup may block), on a hub or a consumer.
    other.register_consumer(on_event, name="filtered", filter=WithTag("a") & Not(WithTag("b")))
    assert delivery.awaitable(), "notifycore's own filters run no app code"
    for code in (
        Predicate(lambda e: True),
        Field("title", str.isupper),
        WithTag("a") | Predicate(bool),
    ):
        other.register_consumer(on_event, name="by-code", filter=code)
        assert not delivery.awaitable(), code
        other.deregister_consumer("by-code")
        other.filter_by(code)
        assert not delivery.awaitable(), code
        other.filter_by(Always())
    assert delivery.awaitable()


def test_asend_runs_a_subclass_consume_over_an_inherited_async_face(
    make_notifications: Make,
) -> None:
    audit: list[str] = []

    class AuditedPush(PushConsumer):
        def consume(self, event: Event) -> None:
            audit.append(event.title)
            super().consume(event)

    n = make_notifications()
    hub = n.create_hub("H")
    hub.register_consumer(AuditedPush())
    assert not n.delivery.awaitable(), "its consume is sync: no async face"
    asyncio.run(n.asend(event(title="async")))
    n.send(event(title="sync"))
    assert audit == ["async", "sync"]
    assert len(n.backend.read("event-hub-H").messages) == 2


def test_a_consumer_whose_own_await_is_cancelled_fails_alone_under_asend(
    make_notifications: Make,
) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    got, fn = collector()

    @hub.register_consumer(name="cancelled")
    async def cancelled(e: Event) -> None:
        waiting = asyncio.get_running_loop().create_future()
        waiting.cancel()  # something it awaits was cancelled by someone else
        await waiting

    hub.register_consumer(PushConsumer())
    hub.register_consumer(fn, name="after")
    result = asyncio.run(n.asend(event()))
    assert result.outcome("H", "cancelled").status is Status.FAILED
    assert isinstance(result.outcome("H", "cancelled").error, asyncio.CancelledError)
    assert len(got) == 1 and len(n.backend.read("event-hub-H").messages) == 1
    assert n.stats["failed"] == 1

    async def cancel_the_send() -> None:
        started = asyncio.Event()

        @hub.register_consumer(name="slow")
        async def slow(e: Event) -> None:
            started.set()
            await asyncio.sleep(30)

        task = asyncio.ensure_future(n.asend(event()))
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # the send itself was cancelled: that is no consumer failing

    asyncio.run(cancel_the_send())


def test_a_push_consumer_belongs_to_one_hub(make_notifications: Make) -> None:
    n = make_notifications()
    push = PushConsumer()
    n.create_hub("A").register_consumer(push)
    with pytest.raises(ConfigurationError, match="one PushConsumer per hub"):
        n.create_hub("B").register_consumer(push)


# -- queued consumers -------------------------------------------------------------------------


def test_queued_mode_enqueues_one_job_per_consumer(make_notifications: Make) -> None:
    from notifycore import Worker

    n = make_notifications()
    hub_a, hub_b = n.create_hub("A"), n.create_hub("B")
    got, fn = collector()
    hub_a.register_consumer(fn, name="mailer", mode="queued")
    hub_b.register_consumer(fn, name="mailer", mode="queued", queue="other")
    e = event()
    result = n.send(e)
    assert [o.status for o in result.outcomes] == [Status.ENQUEUED, Status.ENQUEUED]
    assert all(o.job_id for o in result.outcomes)
    assert got == []
    assert n.backend.queue_length("notifycore") == 1
    assert n.backend.queue_length("other") == 1
    worker = Worker(n)
    assert worker.queues == ["notifycore", "other"]
    assert worker.drain() == 2
    assert got == [e, e]
    assert n.backend.queue_length("notifycore") == n.backend.queue_length("other") == 0


def test_capture_events_records_what_was_sent(make_notifications: Make) -> None:
    n = make_notifications()
    other = make_notifications()
    with capture_events(n) as captured:
        first = event()
        n.send(first)
        other.send(event())
    n.send(event())
    assert list(captured) == [first]
    assert captured.results[0].event is first


# -- the delivery layer and bindings ----------------------------------------------------------


def test_push_consumers_follow_the_backend_that_configure_puts_in_place(
    make_notifications: Make,
) -> None:
    n = make_notifications()
    hub = n.create_hub("Chat")
    hub.register_consumer(PushConsumer())
    first = n.backend
    n.configure({"BACKEND": "memory"})
    assert n.backend is not first and hub.backend is n.backend
    n.send(event(title="after"))
    (message,) = n.backend.read(hub.hub_id).messages
    assert Event.from_json(message.data).title == "after"
    assert not hasattr(hub, "notifications"), "a hub holds no reference back to its owner"


def test_a_worker_needs_only_the_delivery_layer(make_notifications: Make) -> None:
    from notifycore import JobOutcome, Worker

    n = make_notifications()
    seen: list[str] = []
    n.create_hub("h").register_consumer(lambda e: seen.append(e.title), name="q", mode="queued")
    n.send(event(title="queued"))
    worker = Worker(n.delivery)
    assert worker.delivery is n.delivery and not hasattr(worker, "notifications")
    assert worker.run_once() is JobOutcome.DONE
    assert seen == ["queued"]
