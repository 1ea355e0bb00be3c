from __future__ import annotations

import asyncio
from typing import Any

import pytest

from notifycore import InvalidStreamId
from notifycore.backends.memory import MemoryBackend
from notifycore.testing import wait_for
from notifycore.testing.contract import BackendContract


class TestMemoryBackendContract(BackendContract):
    def make_backend(self, **options: Any) -> MemoryBackend:
        return MemoryBackend(**options)


def test_ids_the_stream_never_gave_are_a_reset() -> None:
    backend = MemoryBackend()
    backend.publish("s", b"1")
    assert backend.read("s", "99").reset is True
    assert backend.read("never", "3").reset is True
    assert backend.read("s", "0").reset is False


def test_malformed_ids_are_refused() -> None:
    backend = MemoryBackend()
    for bad in ("abc", "-1", "1.5", "١٢"):
        with pytest.raises(InvalidStreamId):
            backend.read("s", bad)


def test_retention_by_age() -> None:
    backend = MemoryBackend(stream_max_age=0.05)
    first = backend.publish("s", b"old")
    wait_for(lambda: backend.read("s").messages == [], 10, "the message to age out")
    backend.publish("s", b"new")
    batch = backend.read("s", first)
    assert batch.reset is False  # only "old" went, and the reader had it
    assert [m.data for m in backend.read("s").messages] == [b"new"]
    assert backend.read("s", "0").reset is True


def test_non_bytes_payloads_are_refused() -> None:
    backend = MemoryBackend()
    with pytest.raises(TypeError):
        backend.publish("s", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        backend.enqueue("q", "text")  # type: ignore[arg-type]


def test_listeners_get_each_publish_in_id_order_and_a_failing_one_harms_nothing() -> None:
    backend = MemoryBackend()
    heard: list[list[str]] = []

    def broken(batch: Any) -> None:
        raise RuntimeError("a listener's own bug")

    stop_broken = backend.listen("s", broken)
    stop = backend.listen("s", lambda batch: heard.append([m.id for m in batch.messages]))
    first = backend.publish("s", b"1")
    more = backend.publish_many("s", [b"2", b"3"])
    backend.publish("other", b"x")
    assert heard == [[first], more], "one call per publish, only for its stream"
    assert [m.data for m in backend.read("s", None).messages] == [b"1", b"2", b"3"]
    assert stop is not None and stop_broken is not None
    stop()
    stop_broken()
    backend.publish("s", b"4")
    assert len(heard) == 2, "no call once stopped"


def test_a_publish_with_a_bad_message_appends_none_of_them() -> None:
    backend = MemoryBackend()
    heard: list[list[bytes]] = []
    backend.listen("s", lambda batch: heard.append([m.data for m in batch.messages]))
    with pytest.raises(TypeError, match="bytes, not str"):
        backend.publish_many("s", [b"good", "bad"])  # type: ignore[list-item]
    assert backend.read("s", None).messages == [] and heard == []
    backend.publish("s", b"next")
    assert heard == [[b"next"]]


def test_streams_only_listened_to_or_waited_on_are_not_kept() -> None:
    backend = MemoryBackend()
    for number in range(100):  # a user's stream each: subscribed to, never published to
        backend.listen(f"user:{number}", lambda batch: None)()  # type: ignore[misc]

    async def wait_briefly() -> None:
        await backend.aread("user:x", "0", block=0.01)

    asyncio.run(wait_briefly())
    assert backend._streams == {}
    backend.publish("kept", b"1")
    stop = backend.listen("kept", lambda batch: None)
    assert stop is not None
    stop()
    assert list(backend._streams) == ["kept"], "a stream with messages keeps its ids"


def test_a_subclass_that_reads_its_own_way_is_followed_not_listened_to() -> None:
    class Reads(MemoryBackend):
        def read(self, stream: str, after: str | None = None, **options: Any) -> Any:
            return super().read(stream, after, **options)

    assert Reads().listen("s", lambda batch: None) is None
    assert MemoryBackend().listen("s", lambda batch: None) is not None
