"""The contract suite names the capability that failed, and the derived operations' envelopes."""

from __future__ import annotations

from typing import Any

import pytest

from notifycore import ConfigurationError, Job
from notifycore.backends.base import QueuedJob
from notifycore.backends.capabilities import (
    capabilities,
    require_claims,
    require_counters,
    require_inboxes,
    require_key_value,
)
from notifycore.backends.envelope import DeadEnvelope, open_dead, open_job, seal_dead, seal_job
from notifycore.backends.memory import MemoryBackend
from notifycore.testing.contract import BackendContract, CapabilityFailure


class _Contract(BackendContract):
    def __init__(self, backend_class: type[MemoryBackend]) -> None:
        self.backend_class = backend_class

    def make_backend(self, **options: Any) -> MemoryBackend:
        return self.backend_class(**options)


class NoBrowse(MemoryBackend):
    def browse(self, queue: str, *, limit: int | None = None) -> list[QueuedJob]:
        return []


class ForgetsErrors(MemoryBackend):
    def dead_letter(self, job: Job, *, error: str) -> bool:
        return super().dead_letter(job, error="")


class ReleaseCountsATry(MemoryBackend):
    def release(self, job: Job) -> bool:
        return self.retry(job, delay=0.0, error=job.last_error or "")


class ClaimsTwice(MemoryBackend):
    def kv_set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        super().kv_set_if_absent(key, value, ttl=ttl)
        return True


class ForgetsTheUnreadCount(MemoryBackend):
    def inbox_unread(self, user: str) -> int:
        return 0


@pytest.mark.parametrize(
    ("backend_class", "test", "capability"),
    [
        (
            NoBrowse,
            "test_browse_lists_waiting_reserved_and_delayed_jobs_without_taking_them",
            "queues",
        ),
        (ForgetsErrors, "test_dead_letter_records_the_tries_the_worker_gives", "dead letters"),
        (
            ReleaseCountsATry,
            "test_release_gives_the_job_back_at_once_with_its_try_and_error",
            "derived operations",
        ),
        (ClaimsTwice, "test_set_if_absent_claims_a_key_once_until_it_expires", "claims"),
        (
            ForgetsTheUnreadCount,
            "test_read_all_read_and_archived_keep_the_count_exact",
            "inboxes",
        ),
    ],
)
def test_a_failure_names_its_capability(
    backend_class: type[MemoryBackend], test: str, capability: str
) -> None:
    contract = _Contract(backend_class)
    backend = contract.make_backend()
    try:
        with pytest.raises(CapabilityFailure) as failed:
            getattr(contract, test)(backend)
    finally:
        backend.close()
    assert str(failed.value).startswith(f"[{capability}] ")
    assert isinstance(failed.value.__cause__, AssertionError), "the original failure is kept"


def test_the_same_tests_pass_on_the_backend_they_were_broken_from() -> None:
    contract = _Contract(MemoryBackend)
    backend = contract.make_backend()
    try:
        contract.test_browse_lists_waiting_reserved_and_delayed_jobs_without_taking_them(backend)
        contract.test_set_if_absent_claims_a_key_once_until_it_expires(backend)
    finally:
        backend.close()


class Primitives(MemoryBackend):
    """A backend without any optional capability (its kv_* are hidden)."""

    kv_set_if_absent = kv_exists = kv_delete = kv_get = kv_set = kv_incr = None  # type: ignore[assignment]
    inbox_add = inbox_list = inbox_get = inbox_unread = None  # type: ignore[assignment]
    inbox_mark_read = inbox_mark_all_read = inbox_archive = None  # type: ignore[assignment]


def test_a_missing_capability_is_a_clear_configuration_error() -> None:
    assert capabilities(MemoryBackend()) == ["claims", "key-value store", "counters", "inboxes"]
    backend = Primitives()
    assert capabilities(backend) == []
    for require, name in (
        (require_claims, "claims"),
        (require_key_value, "key-value store"),
        (require_counters, "counters"),
        (require_inboxes, "inboxes"),
    ):
        with pytest.raises(ConfigurationError) as refused:
            require(backend, "an inbox")
        message = str(refused.value)
        assert message.startswith(f"an inbox needs a backend that offers {name}")
        assert "Primitives" in message and "docs/backends.md" in message


def test_the_contract_checks_the_refusal_of_a_capability_a_backend_does_not_offer() -> None:
    contract = _Contract(Primitives)
    backend = contract.make_backend()
    try:
        contract.test_set_get_and_delete(backend)
        contract.test_counts_go_up_and_down_and_read_back(backend)
        contract.test_read_all_read_and_archived_keep_the_count_exact(backend)
        contract.test_a_worker_de_duplicates_with_claims_or_the_consumer_is_refused()
    finally:
        backend.close()


def test_a_job_envelope_carries_tries_and_the_last_error() -> None:
    sealed = seal_job(b'{"v":1}', attempts=3, error="boom ✓")
    assert open_job(sealed) == (b'{"v":1}', 3, "boom ✓")
    job = Job("7", "q", sealed, 1, "receipt")
    assert (job.payload, job.attempts, job.last_error) == (b'{"v":1}', 4, "boom ✓")
    # The backend's own last error wins over the envelope's.
    assert Job("7", "q", sealed, 1, "r", "newer").last_error == "newer"
    listed = QueuedJob("7", seal_job(b"x", attempts=2, error=None))
    assert (listed.payload, listed.attempts, listed.last_error) == (b"x", 2, None)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1}',
        b"",
        b"\x00",
        b"\x00NCJ1",
        b"\x00NCJ1\x00\x00\x00\x09not json!",
        b"\x00NCJ1\xff\xff\xff\xff{}",
    ],
)
def test_a_payload_that_is_no_envelope_is_left_as_it_is(payload: bytes) -> None:
    assert open_job(payload) == (payload, 0, None)
    assert Job("1", "q", payload, 1, "r").payload == payload
    assert open_dead(payload) is None


def test_a_dead_letter_envelope_keeps_its_id() -> None:
    letter = DeadEnvelope("42", b"\x00binary", 5, "worker died", 1700000000.5)
    assert open_dead(seal_dead(letter)) == letter
    assert open_job(seal_dead(letter))[1:] == (0, None), "a dead letter is not a retried job"


def test_a_dedupe_consumer_is_refused_on_a_backend_without_claims() -> None:
    from notifycore import Notifications, Worker

    notifications = Notifications(config={}, backend=Primitives(), environ={})
    try:
        hub = notifications.create_hub("jobs")
        with pytest.raises(ConfigurationError) as refused:
            hub.register_consumer(lambda e: None, name="once", mode="queued", dedupe=True)
        assert str(refused.value).startswith(
            "de-duplication (dedupe=True on consumer 'once' of hub 'jobs') needs a backend "
            "that offers claims"
        )
        hub.register_consumer(lambda e: None, name="plain", mode="queued")
        Worker(notifications)  # nothing to refuse
    finally:
        notifications.close()


def test_a_worker_refuses_to_start_for_a_dedupe_consumer_once_the_backend_has_no_claims() -> None:
    from notifycore import Event, JobOutcome, Notifications, Worker

    notifications = Notifications(config={}, backend=MemoryBackend(), environ={})
    try:
        hub = notifications.create_hub("late")
        hub.register_consumer(lambda e: None, name="once", mode="queued", dedupe=True)
        worker = Worker(notifications)
        # The backend is replaced by one without claims (configure() with another backend).
        notifications.configure(notifications.config, backend=Primitives())
        with pytest.raises(ConfigurationError, match="needs a backend that offers claims"):
            Worker(notifications)
        # A worker that was running already dead-letters such jobs, with the reason.
        notifications.send(Event(None, "late", "after the switch", ""))
        job = worker.reserve(block=5.0)
        assert job is not None
        assert worker.process(job) is JobOutcome.DEAD
        (letter,) = notifications.backend.dead_letters("notifycore")
        assert letter.error.startswith("ConfigurationError: de-duplication (dedupe=True on ")
        assert "needs a backend that offers claims" in letter.error
        assert notifications.backend.queue_length("notifycore") == 0
    finally:
        notifications.close()
