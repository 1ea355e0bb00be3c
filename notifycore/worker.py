"""Queued delivery: take jobs off the backend's queues and run their consumers.

:meth:`Worker.process` is the whole contract for one job: decode it, find the
consumer by hub and name, drop it if the event expired, run it, then ack; on
failure retry with exponential back-off, and after the last try (or at once
for a job that can never run) move it to the dead letters with the reason.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from notifycore.backends.base import Job
from notifycore.jobs import InvalidJob, decode_job

if TYPE_CHECKING:
    from notifycore.app import Notifications

__all__ = ["JobOutcome", "Worker", "backoff_delay"]

logger = logging.getLogger("notifycore.worker")


class JobOutcome(enum.StrEnum):
    """What :meth:`Worker.process` did with a job."""

    DONE = "done"
    EXPIRED = "expired"
    RETRY = "retry"
    DEAD = "dead"
    LOST = "lost"  # our reservation ran out and another worker owns the job now


def backoff_delay(attempts: int, base: float, maximum: float) -> float:
    """Seconds to wait before try ``attempts + 1``: ``base * 2**(attempts - 1)``, capped."""
    return float(min(maximum, base * (2 ** max(attempts - 1, 0))))


class Worker:
    """Runs queued jobs for one :class:`~notifycore.Notifications`.

    ``queues`` defaults to the ``DEFAULT_QUEUE`` setting plus every queue a
    queued consumer names.
    """

    def __init__(self, notifications: Notifications, queues: Iterable[str] | None = None) -> None:
        self.notifications = notifications
        self.queues = list(queues) if queues is not None else self._default_queues()
        settings = notifications.settings
        self.visibility_timeout: float = settings["VISIBILITY_TIMEOUT"]
        self.max_tries: int = settings["MAX_TRIES"]
        self.backoff: float = settings["RETRY_BACKOFF"]
        self.backoff_max: float = settings["RETRY_BACKOFF_MAX"]
        self.counts: dict[JobOutcome, int] = dict.fromkeys(JobOutcome, 0)

    def _default_queues(self) -> list[str]:
        queues = [self.notifications.settings["DEFAULT_QUEUE"]]
        for hub in self.notifications.hubs.values():
            for registration in hub.registrations:
                if registration.queue and registration.queue not in queues:
                    queues.append(registration.queue)
        return queues

    def reserve(self, block: float | None = None) -> Job | None:
        """The next job from any of the worker's queues, waiting ``block`` seconds at most."""
        backend = self.notifications.backend
        for queue in self.queues:
            job = backend.reserve(queue, visibility_timeout=self.visibility_timeout)
            if job is not None:
                return job
        if block and self.queues:
            return backend.reserve(
                self.queues[0], visibility_timeout=self.visibility_timeout, block=block
            )
        return None

    def process(self, job: Job) -> JobOutcome:
        """Run one reserved job to its end (ack, retry or dead letter)."""
        outcome = self._process(job)
        self.counts[outcome] += 1
        return outcome

    def _process(self, job: Job) -> JobOutcome:
        backend = self.notifications.backend
        try:
            spec = decode_job(
                job.payload, max_event_size=self.notifications.settings["MAX_EVENT_SIZE"]
            )
            hub, registration = self.notifications.find_registration(spec.hub, spec.consumer)
        except (InvalidJob, LookupError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.error("job %s of queue %s cannot run: %s", job.id, job.queue, reason)
            return JobOutcome.DEAD if backend.dead_letter(job, error=reason) else JobOutcome.LOST
        expiration = spec.event.expiration_datetime
        if expiration is not None and expiration <= datetime.now(UTC):
            self.notifications.count("expired")
            return JobOutcome.EXPIRED if backend.ack(job) else JobOutcome.LOST
        error = self.notifications.run_consumer(hub, registration, spec.event)
        if error is None:
            return JobOutcome.DONE if backend.ack(job) else JobOutcome.LOST
        reason = f"{type(error).__name__}: {error}"
        max_tries = registration.max_tries or self.max_tries
        if job.attempts >= max_tries:
            dead = backend.dead_letter(job, error=reason)
            return JobOutcome.DEAD if dead else JobOutcome.LOST
        delay = backoff_delay(job.attempts, self.backoff, self.backoff_max)
        return (
            JobOutcome.RETRY if backend.retry(job, delay=delay, error=reason) else JobOutcome.LOST
        )

    def run_once(self, block: float | None = None) -> JobOutcome | None:
        """Reserve and process one job; None when there was none."""
        job = self.reserve(block)
        return None if job is None else self.process(job)

    def drain(self, max_jobs: int | None = None) -> int:
        """Process jobs until no queue has a visible job (or ``max_jobs``); return how many."""
        done = 0
        while max_jobs is None or done < max_jobs:
            if self.run_once() is None:
                break
            done += 1
        return done
