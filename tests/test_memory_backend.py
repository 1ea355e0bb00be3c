from __future__ import annotations

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
