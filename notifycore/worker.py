"""Queued delivery: take jobs off the backend's queues and run their consumers.

:meth:`Worker.process` is the whole contract for one job: decode it, find the
consumer by hub and name, drop it if the event expired, skip it if a
de-duplicating consumer already handled it, run it, then ack; on failure retry
with exponential back-off, and after the last try (or at once for a job that
can never run) move it to the dead letters with the reason.

:meth:`Worker.run` blocks (the ``notifycore worker`` command);
:meth:`Worker.start` runs the same loop in background threads
(``Notifications.start_worker``). :meth:`Worker.stop` is graceful: no new
job is reserved, the ones in flight finish and are acked.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from notifycore.backends.base import Job
from notifycore.errors import ConfigurationError, PermanentFailure
from notifycore.jobs import InvalidJob, decode_job

if TYPE_CHECKING:
    from notifycore.app import Notifications

__all__ = ["JobOutcome", "Worker", "backoff_delay", "dedupe_key"]

logger = logging.getLogger("notifycore.worker")


class JobOutcome(enum.StrEnum):
    """What :meth:`Worker.process` did with a job."""

    DONE = "done"
    DUPLICATE = "duplicate"  # a de-duplicating consumer had already handled this event
    EXPIRED = "expired"
    RETRY = "retry"
    DEAD = "dead"
    LOST = "lost"  # our reservation ran out and another worker owns the job now


def backoff_delay(attempts: int, base: float, maximum: float) -> float:
    """Seconds to wait before try ``attempts + 1``: ``base * 2**(attempts - 1)``, capped."""
    return float(min(maximum, base * (2 ** max(attempts - 1, 0))))


def dedupe_key(event_id: str, hub: str, consumer: str) -> str:
    """The key a de-duplicating consumer's handled events are remembered under."""
    return f"done:{hub}:{consumer}:{event_id}"


class Worker:
    """Runs queued jobs for one :class:`~notifycore.Notifications`.

    ``queues`` defaults to the ``DEFAULT_QUEUE`` setting plus every queue a
    queued consumer names. ``concurrency`` threads each reserve and run one
    job at a time. ``on_outcome`` is called after every job (for counters and
    progress displays).
    """

    def __init__(
        self,
        notifications: Notifications,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 1,
        poll: float = 0.5,
        on_outcome: Callable[[JobOutcome], object] | None = None,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a positive integer, not {concurrency!r}")
        self.notifications = notifications
        self.queues = list(queues) if queues is not None else self._default_queues()
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue")
        settings = notifications.settings
        self.visibility_timeout: float = settings["VISIBILITY_TIMEOUT"]
        self.max_tries: int = settings["MAX_TRIES"]
        self.backoff: float = settings["RETRY_BACKOFF"]
        self.backoff_max: float = settings["RETRY_BACKOFF_MAX"]
        self.dedupe_ttl: float = settings["DEDUPE_TTL"]
        self.concurrency = concurrency
        self.poll = poll
        self.on_outcome = on_outcome
        self.counts: dict[JobOutcome, int] = dict.fromkeys(JobOutcome, 0)
        self._counts_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"<Worker queues={self.queues} concurrency={self.concurrency}>"

    def _default_queues(self) -> list[str]:
        queues = [self.notifications.settings["DEFAULT_QUEUE"]]
        for hub in self.notifications.hubs.values():
            for registration in hub.registrations:
                if registration.queue and registration.queue not in queues:
                    queues.append(registration.queue)
        return queues

    # -- one job -----------------------------------------------------------------------------

    def reserve(self, block: float | None = None) -> Job | None:
        """The next job from any of the worker's queues, waiting ``block`` seconds at most."""
        backend = self.notifications.backend
        for queue in self.queues:
            job = backend.reserve(queue, visibility_timeout=self.visibility_timeout)
            if job is not None:
                return job
        if block:
            # Wait on the first queue; the others are looked at again on the next round.
            return backend.reserve(
                self.queues[0], visibility_timeout=self.visibility_timeout, block=block
            )
        return None

    def process(self, job: Job) -> JobOutcome:
        """Run one reserved job to its end (ack, retry or dead letter)."""
        outcome = self._process(job)
        with self._counts_lock:
            self.counts[outcome] += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    def _process(self, job: Job) -> JobOutcome:
        notifications = self.notifications
        backend = notifications.backend
        try:
            spec = decode_job(job.payload, max_event_size=notifications.settings["MAX_EVENT_SIZE"])
            hub, registration = notifications.find_registration(spec.hub, spec.consumer)
        except (InvalidJob, LookupError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.error("job %s of queue %s cannot run: %s", job.id, job.queue, reason)
            return JobOutcome.DEAD if backend.dead_letter(job, error=reason) else JobOutcome.LOST
        event = spec.event
        expiration = event.expiration_datetime
        if expiration is not None and expiration <= datetime.now(UTC):
            notifications.count("expired")
            return JobOutcome.EXPIRED if backend.ack(job) else JobOutcome.LOST
        done: Callable[[], object] | None = None
        if registration.dedupe:
            key = dedupe_key(event.event_id, hub.label, registration.name)
            if backend.is_done(key):
                return JobOutcome.DUPLICATE if backend.ack(job) else JobOutcome.LOST
            ttl = self.dedupe_ttl

            def done() -> object:
                return backend.mark_done(key, ttl=ttl)

        error = notifications.run_consumer(hub, registration, event, done)
        if error is None:
            return JobOutcome.DONE if backend.ack(job) else JobOutcome.LOST
        reason = f"{type(error).__name__}: {error}"
        if isinstance(error, PermanentFailure) or job.attempts >= (
            registration.max_tries or self.max_tries
        ):
            logger.error("job %s dead after %d tries: %s", job.id, job.attempts, reason)
            return JobOutcome.DEAD if backend.dead_letter(job, error=reason) else JobOutcome.LOST
        delay = backoff_delay(job.attempts, self.backoff, self.backoff_max)
        return (
            JobOutcome.RETRY if backend.retry(job, delay=delay, error=reason) else JobOutcome.LOST
        )

    def run_once(self, block: float | None = None) -> JobOutcome | None:
        """Reserve and process one job; None when there was none."""
        job = self.reserve(block)
        return None if job is None else self.process(job)

    def drain(self, max_jobs: int | None = None) -> int:
        """Process jobs in this thread until none is visible (or ``max_jobs``); return how many."""
        done = 0
        while max_jobs is None or done < max_jobs:
            if self.run_once() is None:
                break
            done += 1
        return done

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self, burst: bool) -> None:
        while not self._stop.is_set():
            try:
                job = self.reserve(None if burst else self.poll)
            except Exception:  # a broker outage must not kill the thread: wait and try again
                logger.exception("reserving a job failed; trying again")
                self._stop.wait(self.poll)
                continue
            if job is None:
                if burst:
                    return
                continue
            try:
                self.process(job)
            except Exception:  # e.g. the broker went away before the ack: the job comes back
                logger.exception("job %s could not be finished; it will be redelivered", job.id)

    def start(self, *, burst: bool = False) -> Worker:
        """Start ``concurrency`` threads; returns at once."""
        if self._threads:
            raise ConfigurationError("this worker is already running")
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=self._loop, args=(burst,), name=f"notifycore-worker-{i}", daemon=True
            )
            for i in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop reserving; wait (``timeout`` seconds at most) for the jobs in flight to finish."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every thread ended (after :meth:`stop`, or a burst run that drained)."""
        for thread in self._threads:
            thread.join(timeout)
        alive = [t for t in self._threads if t.is_alive()]
        return not alive

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def run(self, *, burst: bool = False) -> None:
        """Block until :meth:`stop` is called (from a signal handler, say), or drained in burst mode."""
        self.start(burst=burst)
        try:
            while self.running:
                # Short joins keep the main thread responsive to signals.
                for thread in self._threads:
                    thread.join(0.2)
        finally:
            self.stop()
