"""Edge cases found in review: each test failed before its fix."""

from __future__ import annotations

import asyncio
import copy
import gc
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from notifycore import (
    ConfigurationError,
    Event,
    InvalidEvent,
    JobOutcome,
    Notifications,
    Status,
    Worker,
)
from notifycore.backends.base import Backend
from notifycore.backends.memory import MemoryBackend
from notifycore.backends.sqlite import SQLiteBackend
from notifycore.filters import Field, Predicate, WithEventType, WithTag, filter_from_dict
from notifycore.plugins import Plugins
from notifycore.testing import await_for, wait_for

Make = Callable[..., Notifications]
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    made: Backend = (
        MemoryBackend()
        if request.param == "memory"
        else SQLiteBackend(f"sqlite:///{tmp_path}/e.db")
    )
    yield made
    made.close()


def test_a_reader_ahead_of_the_stream_gets_one_reset_then_everything(backend: Backend) -> None:
    for i in range(5):
        backend.publish("s", f"m{i}".encode())
    batch = backend.read("s", "99")
    assert batch.reset is True
    assert [m.data for m in batch.messages] == [f"m{i}".encode() for i in range(5)]
    stop = threading.Event()
    batches = []
    for got in backend.follow("s", "99", stop=stop, poll=0.05):
        batches.append(got)
        if len(batches) == 1:
            backend.publish("s", b"later")
        if len(batches) == 2:
            break
    assert batches[0].reset and len(batches[0].messages) == 5
    assert not batches[1].reset and [m.data for m in batches[1].messages] == [b"later"]


def test_a_follower_on_an_emptied_stream_does_not_spin() -> None:
    backend = MemoryBackend(stream_max_age=0.01)
    backend.publish("s", b"old")
    wait_for(lambda: backend.read("s").messages == [], 10, "the message to age out")
    stop = threading.Event()
    seen = []
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    for got in backend.follow("s", "0", stop=stop, poll=0.05):
        seen.append(got)
    timer.join()
    assert len(seen) == 1 and seen[0].reset, "one reset, not one per loop"


def test_sqlite_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path}/t.db")
    threads = [threading.Thread(target=backend.publish, args=("s", b"x")) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    del threads, t
    gc.collect()
    assert len(backend._connections) <= 2
    assert len(backend.read("s").messages) == 40
    backend.close()


def test_processes_creating_one_fresh_file_together_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    code = (
        "import sys; from notifycore.backends.sqlite import SQLiteBackend;"
        f"b = SQLiteBackend('sqlite:///{path}'); b.publish('s', b'x'); b.close()"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(10)
    ]
    errors = [c.communicate(timeout=60)[1] for c in children]
    assert [c.returncode for c in children] == [0] * 10, errors
    check = SQLiteBackend(f"sqlite:///{path}")
    assert len(check.read("s").messages) == 10
    check.close()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v": 1, "hub": "H", "consumer": "c", "event": {"event_type": "t", "self": 1}}',
        b'{"v": 1, "hub": "H", "consumer": "c", "event": {"event_type": "t", "x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",
    ],
)
def test_poison_jobs_go_to_the_dead_letters(make_notifications: Make, payload: bytes) -> None:
    n = make_notifications(MAX_TRIES=2, RETRY_BACKOFF=0.0)
    n.create_hub("H").register_consumer(lambda e: None, name="c", mode="queued")
    n.backend.enqueue("notifycore", payload)
    assert Worker(n).run_once() is JobOutcome.DEAD
    assert n.backend.queue_length("notifycore") == 0


def test_async_callable_objects_are_awaited(make_notifications: Make) -> None:
    got: list[str] = []

    class Handler:
        async def __call__(self, event: Event) -> None:
            await asyncio.sleep(0)
            got.append(event.title)

    n = make_notifications()
    n.create_hub("H").register_consumer(Handler(), name="handler")
    assert n.send(Event(None, "t", "sync")).outcome("H", "handler").status is Status.RAN
    asyncio.run(n.asend(Event(None, "t", "async")))
    assert got == ["sync", "async"]


def test_bad_event_dicts_raise_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="self"):
        Event.from_dict({"event_type": "t", "self": 1})
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        Event.from_json("[" * 100_000 + "]" * 100_000, max_size=None)
    with pytest.raises(InvalidEvent, match="too large"):
        Event(None, "t", n=10**5000)


def test_extra_fields_cannot_be_changed_through_the_event() -> None:
    event = Event(None, "t", colour="red", data=[1], meta={"k": "v"})
    before = event.to_json()
    event["data"].append(2)
    event["meta"]["k"] = "changed"
    event.extra["colour"] = "blue"  # type: ignore[index]
    assert event["data"] == [1] and event["meta"] == {"k": "v"} and event["colour"] == "red"
    assert event.to_json() == before


def test_filter_subclasses_do_not_take_over_dict_forms() -> None:
    class Urgent(WithEventType):
        def __init__(self) -> None:
            super().__init__("urgent")

    assert filter_from_dict({"type": "event_type", "values": ["a"]}) == WithEventType("a")


def test_filters_copy_and_pickle() -> None:
    flt = WithEventType("a") & ~WithTag("b") | Field("n", [1, {"k": True}])
    assert copy.copy(flt) is flt and copy.deepcopy(flt) is flt
    back = pickle.loads(pickle.dumps(flt))
    assert back == flt and hash(back) == hash(flt)
    assert back.matches(Event(None, "a"))


def test_field_compares_like_json() -> None:
    assert Field("recipients", ("a",)) == Field("recipients", ["a"])
    assert Field("recipients", ("a",)).matches(Event(None, "t", recipients=["a"]))
    assert not Field("count", 1).matches(Event(None, "t", count=True))
    assert Field("count", True).matches(Event(None, "t", count=True))
    assert Field("n", 1).matches(Event(None, "t", n=1.0))


def test_load_again_after_a_failed_load_gives_the_same_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugins = Plugins()

    def broken(group: str) -> int:
        raise ImportError("a broken plugin")

    monkeypatch.setattr(plugins.pm, "load_setuptools_entrypoints", broken)
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="failed to load"):
            plugins.load()


def test_a_raising_hub_filter_fails_its_hub_only(make_notifications: Make) -> None:
    n = make_notifications()
    broken = n.create_hub("Broken")
    broken.filter_by(Predicate(lambda e: e["missing"]))
    broken.register_consumer(lambda e: None, name="never")
    got: list[Event] = []
    n.create_hub("Fine").register_consumer(got.append, name="c")
    narrow = n.create_hub("Narrow")
    narrow.register_consumer(got.append, name="picky", filter=Predicate(lambda e: 1 / 0))
    result = n.send(Event(None, "t"))
    assert len(got) == 1
    assert result.outcome("Broken", "never").status is Status.FAILED
    assert isinstance(result.outcome("Narrow", "picky").error, ZeroDivisionError)
    assert n.stats["failed"] == 2


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("MAX_TRIES", 0),
        ("VISIBILITY_TIMEOUT", -5),
        ("STREAM_MAXLEN", 0),
        ("MAX_EVENT_SIZE", -1),
        ("RETRY_BACKOFF", float("nan")),
    ],
)
def test_settings_that_make_no_sense_are_refused(setting: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        Notifications(config={"BACKEND": "memory", setting: value}, environ={})


def test_cancelled_async_reads_leave_no_waiter() -> None:
    backend = MemoryBackend()

    async def scenario() -> None:
        task = asyncio.create_task(backend.aread("s", "0", block=30))
        # The read is waiting before it is cancelled.
        await await_for(lambda: bool(backend._stream("s").waiters), 30, "the read to wait")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert backend._stream("s").waiters == []


def cli(
    env: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [NOTIFYCORE, *args], env=env, input=stdin, capture_output=True, timeout=60
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["send", "--hub", "H", "--type", "t", "--field", "title=x"], None, b"use --title"),
        (["send", "--hub", "H", "--type", "t", "--field", "self=1"], None, b"standard field"),
        (["send", "--hub", "H", "--json", "-"], b"\xff\xfe{", b"not UTF-8"),
        (["worker", "--app", ":x"], None, b"--app takes package.module:attribute"),
        (["worker", "--app", ".foo"], None, b"--app takes package.module:attribute"),
    ],
)
def test_cli_input_errors_are_one_line(
    env: dict[str, str], args: list[str], stdin: bytes | None, message: bytes
) -> None:
    done = cli(env, *args, stdin=stdin)
    assert done.returncode == 1
    assert done.stderr.startswith(b"notifycore: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_bulk_send_checks_every_size_before_sending(env: dict[str, str]) -> None:
    events = [Event(None, "t", "ok"), Event(None, "t", "ok"), Event(None, "t", body="x" * 70_000)]
    payload = "[" + ",".join(e.to_json() for e in events) + "]"
    done = cli(env, "send", "--hub", "H", "--json", "-", stdin=payload.encode())
    assert done.returncode == 1 and b"over the limit" in done.stderr
    tail = cli(env, "tail", "event-hub-H", "--since", "0", "--timeout", "0.5")
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout == b"", "nothing was sent"


def test_config_from_the_environment_does_not_break_app(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "envapp.py").write_text(
        "from notifycore import Notifications\nnotifications = Notifications()\n"
    )
    env = {**env, "NOTIFYCORE_CONFIG": str(tmp_path / "unused.toml"), "PYTHONPATH": str(tmp_path)}
    done = cli(env, "dead-letters", "list", "--app", "envapp")
    assert done.returncode == 0, done.stderr
