"""Queued delivery: take jobs off the backend's queues and run their consumers.

:meth:`Worker.process` is the whole contract for one job: decode it, find the
consumer by hub and name, drop it if the event expired, skip it if a
de-duplicating consumer already handled it, dead-letter it if its tries are
used up, run it, then ack; on failure retry with exponential back-off, and
after the last try (or at once for a job that can never run) move it to the
dead letters with the reason. A try counts when the job is handed out, not
when its consumer raises, so a job whose consumer kills the worker process
still reaches the dead letters.

:meth:`Worker.run` blocks (the ``notifycore worker`` command);
:meth:`Worker.start` runs the same loop in background threads
(``Notifications.start_worker``). A watcher thread holds each job to its time
limit: Python cannot stop a thread, so a consumer past its limit is left
running on its own, its try counts as failed and a new thread takes its
place — until as many threads are stuck as the worker has slots, when the
worker gives up (:attr:`Worker.exhausted`) so that its process can be
restarted. :meth:`Worker.stop` stops within a grace period: no new job is
reserved, the jobs in flight may finish, and those still running at the
deadline go back to the queue.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from notifycore.backends.base import Job, Outage
from notifycore.backends.capabilities import require_claims
from notifycore.delivery import Delivery
from notifycore.errors import (
    BackendUnavailable,
    ConfigurationError,
    ConsumerTimeout,
    InvalidJob,
    PermanentFailure,
)
from notifycore.jobs import decode_job

if TYPE_CHECKING:
    from notifycore.event import Event
    from notifycore.hub import Hub, Registration

__all__ = ["HasDelivery", "JobOutcome", "Worker", "backoff_delay", "dedupe_key"]

logger = logging.getLogger("notifycore.worker")

#: A prefetched job starts within this many seconds of its reservation, or goes back (at
#: most a tenth of the visibility timeout); a loop reserves as many as its recent jobs
#: suggest fit in half of it, up to _BATCH_MAX (or the backend's ``batch_max``: SQLite, whose
#: reservation is a local transaction, takes more at a time).
_BATCH_WINDOW = 0.1
_BATCH_MAX = 32


class _Batch:
    """One loop's prefetched jobs (reserved together, not started yet) and its finished
    jobs whose ack goes with the next reservation, and what each was. The lock makes
    taking them over safe from another thread (the watcher, a stop)."""

    def __init__(self, window: float) -> None:
        self.lock = threading.Lock()
        self.window = window
        self.held: collections.deque[Job] = collections.deque()
        self.since = 0.0  # time.monotonic() of the reservation of ``held``
        self.taken = 0  # how many jobs that reservation took
        self.size = 1  # how many the next reservation asks for
        self.pending: list[tuple[Job, JobOutcome]] = []

    def add(self, job: Job, outcome: JobOutcome) -> None:
        with self.lock:
            self.pending.append((job, outcome))

    def take(self, *, held: bool = True) -> tuple[list[tuple[Job, JobOutcome]], list[Job]]:
        """The pending acks and (``held``) the jobs held unstarted, leaving none."""
        with self.lock:
            pending, self.pending = self.pending, []
            jobs: list[Job] = []
            if held:
                jobs = list(self.held)
                self.held.clear()
        return pending, jobs

    def busy(self) -> bool:
        """Jobs wait: prefetched ones, or acks."""
        return bool(self.held or self.pending)

    def next_held(self, now: float) -> Job | None:
        """A prefetched job still young enough to start, or None."""
        with self.lock:
            if self.held and now - self.since <= self.window:
                return self.held.popleft()
            return None


#: How long past its limit an async consumer's own cancellation is given before the
#: watcher treats its thread as stuck (a hook, or a consumer that blocks the event loop).
_ASYNC_MARGIN = 2.0


class JobOutcome(enum.StrEnum):
    """What :meth:`Worker.process` did with a job."""

    DONE = "done"
    DUPLICATE = "duplicate"  # a de-duplicating consumer had already handled this event
    EXPIRED = "expired"
    RETRY = "retry"
    DEAD = "dead"
    LOST = "lost"  # our reservation ran out and another worker owns the job now
    RELEASED = "released"  # a stopping worker gave the job back to its queue


def backoff_delay(attempts: int, base: float, maximum: float) -> float:
    """Seconds to wait before try ``attempts + 1``: ``base * 2**(attempts - 1)``, capped."""
    return float(min(maximum, base * (2 ** max(attempts - 1, 0))))


def dedupe_key(event_id: str, hub: str, consumer: str) -> str:
    """The key a de-duplicating consumer's handled events are remembered under."""
    return f"done:{hub}:{consumer}:{event_id}"


def _dedupe_use(hub: Hub, registration: Registration) -> str:
    return f"de-duplication (dedupe=True on consumer {registration.name!r} of hub {hub.label!r})"


class HasDelivery(Protocol):
    """An object holding a :class:`~notifycore.delivery.Delivery` (a ``Notifications``)."""

    @property
    def delivery(self) -> Delivery: ...


@dataclasses.dataclass(eq=False, slots=True)
class _Running:
    """A job one of the worker's threads holds, from its reservation to its end."""

    job: Job
    thread: threading.Thread
    #: When the consumer must have returned (``time.monotonic()``); none before it starts.
    deadline: float = math.inf
    #: When the consumer started (``time.monotonic()``).
    started: float = math.inf
    timeout: float = 0.0
    hub: Hub | None = None
    registration: Registration | None = None
    event: Event | None = None
    #: The consumer returned: its thread is acking (or retrying) the job.
    finishing: bool = False
    #: The worker took the job out of its thread's hands (timed out, or given back at a stop).
    abandoned: bool = False
    #: The thread's prefetched jobs and pending acks, settled by whoever abandons it.
    batch: _Batch | None = None


class Worker:
    """Runs queued jobs through a :class:`~notifycore.delivery.Delivery`.

    ``delivery`` is the delivery layer of a :class:`~notifycore.Notifications`
    (``notifications.delivery``); for convenience the ``Notifications`` itself
    (anything with a ``delivery`` attribute) is accepted. ``queues`` defaults to the ``DEFAULT_QUEUE`` setting plus every queue a
    queued consumer names. ``concurrency`` threads each reserve and run one
    job at a time. ``grace`` (default: the ``WORKER_GRACE_PERIOD`` setting) is
    how long :meth:`stop` lets jobs in flight finish. ``on_outcome`` is called
    after every job (for counters and progress displays).
    """

    def __init__(
        self,
        delivery: Delivery | HasDelivery,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 1,
        poll: float = 0.5,
        grace: float | None = None,
        on_outcome: Callable[[JobOutcome], object] | None = None,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a positive integer, not {concurrency!r}")
        if not isinstance(delivery, Delivery):
            delivery = delivery.delivery
        #: Where jobs are routed and run: hubs, consumers, hooks, backend and settings.
        self.delivery = delivery
        self.queues = list(queues) if queues is not None else self._default_queues()
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue")
        settings = delivery.settings
        self.visibility_timeout: float = settings["VISIBILITY_TIMEOUT"]
        self.max_tries: int = settings["MAX_TRIES"]
        self.backoff: float = settings["RETRY_BACKOFF"]
        self.backoff_max: float = settings["RETRY_BACKOFF_MAX"]
        self.dedupe_ttl: float = settings["DEDUPE_TTL"]
        #: Seconds a consumer may run on one job unless its registration says otherwise.
        self.job_timeout: float = settings["JOB_TIMEOUT"] or self.visibility_timeout
        self._check_timeouts(settings["JOB_TIMEOUT"])
        self._check_dedupe()
        if grace is None:
            grace = settings["WORKER_GRACE_PERIOD"]
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
            raise ConfigurationError(f"grace must be a number of seconds >= 0, not {grace!r}")
        self.grace = float(grace)
        self.concurrency = concurrency
        self.poll = poll
        self.on_outcome = on_outcome
        self.counts: dict[JobOutcome, int] = dict.fromkeys(JobOutcome, 0)
        #: True once as many threads are stuck in consumers past their time limit as the
        #: worker has slots: it stopped taking jobs, and its process should be restarted.
        self.exhausted = False
        #: The ConfigurationError that stopped the worker (the backend refused its settings,
        #: a wrong password say: trying again cannot help); :meth:`run` raises it.
        self.fatal: ConfigurationError | None = None
        #: Backend calls that failed (each outage is logged once, however many there are).
        self.backend_errors = 0
        self._counts_lock = threading.Lock()
        self._stop = threading.Event()
        # Set from signal handlers, so plain attributes: a handler must not take a lock.
        self._stop_requested = False
        self._stop_now = False
        self._stop_reason = "stop requested"
        self._cond = threading.Condition()
        self._running: dict[threading.Thread, _Running] = {}
        self._slots: list[threading.Thread] = []
        self._stuck: list[threading.Thread] = []
        self._concluding = 0  # timed-out jobs the watcher is still retrying or dead-lettering
        self._generation = 0
        self._watcher: threading.Thread | None = None
        self._watching = False
        #: While the watcher waits, when it wakes anyway (``time.monotonic()``); else -inf.
        self._watch_until = -math.inf
        self._burst = False
        self._outage_lock = threading.Lock()
        self._outage = Outage(delivery.backend)
        self._down_since = 0.0
        self._errors_before = 0

    def __repr__(self) -> str:
        return f"<Worker queues={self.queues} concurrency={self.concurrency}>"

    def _default_queues(self) -> list[str]:
        queues = [self.delivery.settings["DEFAULT_QUEUE"]]
        for hub in self.delivery.hubs.values():
            for registration in hub.registrations:
                if registration.queue and registration.queue not in queues:
                    queues.append(registration.queue)
        return queues

    def _check_dedupe(self) -> None:
        """De-duplication needs the backend's claims (a capability): refuse to start without."""
        default_queue = self.delivery.settings["DEFAULT_QUEUE"]
        for hub in self.delivery.hubs.values():
            for registration in hub.registrations:
                if registration.dedupe and (registration.queue or default_queue) in self.queues:
                    require_claims(self.delivery.backend, _dedupe_use(hub, registration))

    def _check_timeouts(self, job_timeout: float | None) -> None:
        """A job may not outrun its reservation: another worker would take it meanwhile."""
        vt = self.visibility_timeout
        if job_timeout is not None and job_timeout > vt:
            raise ConfigurationError(
                f"JOB_TIMEOUT ({job_timeout:g} s) is longer than VISIBILITY_TIMEOUT ({vt:g} s): "
                "another worker would take a job while it still runs; raise VISIBILITY_TIMEOUT"
            )
        default_queue = self.delivery.settings["DEFAULT_QUEUE"]
        for hub in self.delivery.hubs.values():
            for registration in hub.registrations:
                if (
                    registration.timeout is not None
                    and registration.timeout > vt
                    and (registration.queue or default_queue) in self.queues
                ):
                    raise ConfigurationError(
                        f"consumer {registration.name!r} of hub {hub.label!r} has a timeout of "
                        f"{registration.timeout:g} s, longer than VISIBILITY_TIMEOUT ({vt:g} s): "
                        "another worker would take a job while it still runs; raise "
                        "VISIBILITY_TIMEOUT"
                    )

    def timeout_for(self, registration: Registration) -> float:
        """Seconds the consumer of ``registration`` may run on one job."""
        # Never past the reservation, even for consumers registered after the worker started.
        return min(registration.timeout or self.job_timeout, self.visibility_timeout)

    # -- one job -----------------------------------------------------------------------------

    def reserve(self, block: float | None = None, *, skip_first: bool = False) -> Job | None:
        """The next job from any of the worker's queues, waiting ``block`` seconds at most
        (``skip_first``: the first queue was just looked at)."""
        backend = self.delivery.backend
        for queue in self.queues[1:] if skip_first else self.queues:
            job = backend.reserve(queue, visibility_timeout=self.visibility_timeout)
            if job is not None:
                return job
        if block:
            # Wait on the first queue; the others are looked at again on the next round.
            return backend.reserve(
                self.queues[0], visibility_timeout=self.visibility_timeout, block=block
            )
        return None

    def _next(
        self, batch: _Batch, block: float | None, most: int | None = None
    ) -> tuple[Job, float] | None:
        """The loop's next job and its age (seconds since its reservation): a prefetched
        one, or a new batch of ``most`` jobs at most reserved together with the acks of the
        finished ones (one round trip, one SQLite transaction); None when there is none
        within ``block`` seconds."""
        now = time.monotonic()
        job = batch.next_held(now)
        if job is not None:
            if job.attempts > 1:  # tried before (a retry, a worker that died): it may crash
                self._settle(batch, give_back=False)  # this one: nothing finished runs again
            return job, now - batch.since
        pending, stale = batch.take()
        if stale:  # held too long (slow jobs): give them back before taking more
            self._release_unstarted(stale)
            batch.size = 1
        elif batch.taken:  # as many as the last batch's pace fits in half the window
            per_job = max((now - batch.since) / batch.taken, 1e-6)
            batch.size = max(1, min(self._batch_max(), int(batch.window / 2 / per_job)))
        try:
            acked, jobs = self.delivery.backend.ack_and_reserve(
                [job for job, _ in pending],
                self.queues[0],
                count=batch.size if most is None else min(batch.size, most),
                visibility_timeout=self.visibility_timeout,
            )
        except BaseException:
            with batch.lock:  # not acked: tried again with the next reservation
                batch.pending[:0] = pending
            raise
        for (_, outcome), ok in zip(pending, acked, strict=True):
            self._record(outcome if ok else JobOutcome.LOST)
        if not jobs:
            batch.taken = 0
            job = self.reserve(block, skip_first=True)
            return None if job is None else (job, 0.0)
        with batch.lock:
            batch.since, batch.taken = now, len(jobs)
            batch.held.extend(jobs[1:])
        return jobs[0], time.monotonic() - now

    def _batch_max(self) -> int:
        """How many jobs one reservation may take: the backend's ``batch_max``, if it has one."""
        most = getattr(self.delivery.backend, "batch_max", _BATCH_MAX)
        return most if isinstance(most, int) and most >= 1 else _BATCH_MAX

    def _release_unstarted(self, jobs: list[Job]) -> None:
        """Give prefetched jobs that never started back at once, their try not counted."""
        backend = self.delivery.backend
        for job in jobs:
            try:
                backend.release(job)
            except Exception as error:  # it comes back after its visibility timeout
                self._backend_failed(f"giving job {job.id} back", error)

    def _settle(self, batch: _Batch, *, give_back: bool = True) -> None:
        """Ack the batch's finished jobs and (``give_back``) give its unstarted ones back (a
        loop that ends, or a thread the worker left behind), recording the outcomes."""
        pending, held = batch.take(held=give_back)
        if held:
            self._release_unstarted(held)
        if not pending:
            return
        jobs = [job for job, _ in pending]
        try:
            acked, _ = self.delivery.backend.ack_and_reserve(
                jobs, self.queues[0], count=0, visibility_timeout=self.visibility_timeout
            )
        except Exception as error:  # they come back after their visibility timeout
            self._backend_failed(f"acking {len(jobs)} job(s) (they will come back)", error)
            acked = [False] * len(jobs)
        for (_, outcome), ok in zip(pending, acked, strict=True):
            self._record(outcome if ok else JobOutcome.LOST)

    def process(self, job: Job) -> JobOutcome:
        """Run one reserved job to its end (ack, retry or dead letter) in this thread.

        An async consumer is cancelled at its time limit; a sync one is held to
        it only by the watcher of a running worker (:meth:`start`, :meth:`run`).
        """
        outcome = self._process(job, None)
        assert outcome is not None  # only a job the watcher took over has none
        self._record(outcome)
        return outcome

    def _record(self, outcome: JobOutcome) -> None:
        with self._counts_lock:
            self.counts[outcome] += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _acked(self, job: Job, outcome: JobOutcome, batch: _Batch | None) -> JobOutcome | None:
        """Ack ``job``: now (its outcome, or LOST), or with the next reservation when the
        caller keeps a ``batch`` (None: the outcome is recorded then)."""
        if batch is None:
            return outcome if self.delivery.backend.ack(job) else JobOutcome.LOST
        batch.add(job, outcome)
        return None

    def _process(
        self, job: Job, running: _Running | None, batch: _Batch | None = None, age: float = 0.0
    ) -> JobOutcome | None:
        """One job, reserved ``age`` seconds ago; None when the watcher or a stop took it
        over meanwhile (``running``), or when its ack waits in ``batch`` for the next
        reservation."""
        delivery = self.delivery
        backend = delivery.backend
        try:
            spec = decode_job(job.payload, max_event_size=delivery.settings["MAX_EVENT_SIZE"])
            hub, registration = delivery.find_registration(spec.hub, spec.consumer)
        except (InvalidJob, LookupError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            logger.error("job %s of queue %s cannot run: %s", job.id, job.queue, reason)
            return JobOutcome.DEAD if backend.dead_letter(job, error=reason) else JobOutcome.LOST
        event = spec.event
        expiration = event.expiration_datetime
        if expiration is not None and expiration <= datetime.now(UTC):
            delivery.count("expired")
            return self._acked(job, JobOutcome.EXPIRED, batch)
        done: Callable[[], object] | None = None
        if registration.dedupe:
            try:  # registered after the worker started, on a backend without a store
                store = require_claims(backend, _dedupe_use(hub, registration))
            except ConfigurationError as exc:
                logger.error("job %s of queue %s cannot run: %s", job.id, job.queue, exc)
                dead = backend.dead_letter(job, error=f"ConfigurationError: {exc}")
                return JobOutcome.DEAD if dead else JobOutcome.LOST
            key = dedupe_key(event.event_id, hub.label, registration.name)
            if store.kv_exists(key):
                return self._acked(job, JobOutcome.DUPLICATE, batch)
            ttl = self.dedupe_ttl

            def done() -> object:
                return store.kv_set_if_absent(key, b"1", ttl=ttl)

        limit = registration.max_tries or self.max_tries
        if job.attempts > limit:
            return self._dead_after_lost_tries(job, limit)
        # Never past the reservation: a prefetched job has had it for ``age`` seconds.
        timeout = min(self.timeout_for(registration), self.visibility_timeout - age)
        if running is not None and not self._begin(running, hub, registration, event, timeout):
            return None
        error = delivery.run(hub, registration, event, done, timeout=timeout)
        if running is not None and not self._end(running):
            return None
        if error is None:
            return self._acked(job, JobOutcome.DONE, batch)
        return self._conclude(job, registration, error)

    def _dead_after_lost_tries(self, job: Job, limit: int) -> JobOutcome:
        """Every earlier delivery was handed out and none came back: its worker died."""
        tries = job.attempts - 1
        reason = (
            f"worker died: try {tries} of {limit} never finished (the worker running it was "
            "killed, crashed, ran out of memory or stopped answering)"
        )
        if job.last_error:
            reason += f"; last error: {job.last_error}"
        logger.error("job %s of queue %s dead: %s", job.id, job.queue, reason)
        # This delivery is not a try: the dead letter records the tries the job had.
        letter = dataclasses.replace(job, attempts=tries)
        dead = self.delivery.backend.dead_letter(letter, error=reason)
        return JobOutcome.DEAD if dead else JobOutcome.LOST

    def _conclude(
        self, job: Job, registration: Registration, error: BaseException | None
    ) -> JobOutcome:
        """Ack a job whose consumer succeeded; retry or dead-letter one whose consumer failed."""
        backend = self.delivery.backend
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

    def _begin(
        self,
        running: _Running,
        hub: Hub,
        registration: Registration,
        event: Event,
        timeout: float,
    ) -> bool:
        """Start the job's clock; False when the job was given back before it started."""
        with self._cond:
            if running.abandoned:
                return False
            running.hub, running.registration, running.event = hub, registration, event
            running.timeout = timeout
            margin = _ASYNC_MARGIN if registration.is_async else 0.0
            running.started = time.monotonic()
            running.deadline = running.started + timeout + margin
            # Wake the watcher only when this job is due before it wakes anyway: fast jobs
            # one after the other would otherwise wake it (a thread switch) for every job.
            due = running.deadline
            if running.batch is not None:
                due = min(due, running.started + running.batch.window)
            if due < self._watch_until:
                self._cond.notify_all()
            return True

    def _end(self, running: _Running) -> bool:
        """The consumer returned; False when the watcher had already failed its try."""
        with self._cond:
            if running.abandoned:
                return False
            running.finishing = True
            return True

    def run_once(self, block: float | None = None) -> JobOutcome | None:
        """Reserve and process one job; None when there was none."""
        job = self.reserve(block)
        return None if job is None else self.process(job)

    def drain(self, max_jobs: int | None = None) -> int:
        """Process jobs in this thread until none is visible (or ``max_jobs``); return how many.

        Jobs are reserved a few at a time when they run fast (see :meth:`run`), and each
        finished one is acked with the next reservation; before this returns, the last
        ones are acked and any prefetched job not started goes back to its queue.
        """
        done = 0
        batch = self._batch()
        try:
            while max_jobs is None or done < max_jobs:
                most = None if max_jobs is None else max_jobs - done
                taken = self._next(batch, None, most)
                if taken is None:
                    break
                job, age = taken
                outcome = self._process(job, None, batch, age)
                if outcome is not None:
                    self._record(outcome)
                done += 1
        finally:
            self._settle(batch)
        return done

    def _batch(self) -> _Batch:
        return _Batch(min(_BATCH_WINDOW, self.visibility_timeout / 10))

    # -- backend outages ---------------------------------------------------------------------

    def _backend_failed(self, what: str, error: BaseException) -> float:
        """Note a failed backend call; the first of an outage is logged. Returns the back-off.

        A :class:`ConfigurationError` (a wrong password in the backend's URL, say) is no
        outage: trying again cannot help, so the worker stops and :meth:`run` raises it."""
        if isinstance(error, ConfigurationError):
            with self._outage_lock:
                first, self.fatal = self.fatal is None, self.fatal or error
            if first:
                logger.error("%s failed: %s; the worker stops", what, error)
                self.request_stop(f"configuration error: {error}")
            return 0.0
        backend = self.delivery.backend
        with self._outage_lock:
            self.backend_errors += 1
            first = not self._outage.down
            if first:
                self._down_since = time.monotonic()
                self._errors_before = self.backend_errors - 1
            delay = self._outage.failed(error)  # tells notifycore_backend_state, once
        self.delivery.plugins.metric("worker.backend_errors", 1)
        if not first:
            logger.debug("%s failed again: %s: %s", what, type(error).__name__, error)
        elif isinstance(error, (BackendUnavailable, *backend.connection_errors)):
            logger.warning(
                "%s failed, the backend is down: %s; trying again until it answers", what, error
            )
        else:
            logger.error(
                "%s failed: %s: %s; trying again", what, type(error).__name__, error, exc_info=error
            )
        return delay

    def _backend_ok(self) -> None:
        if not self._outage.down:
            return
        with self._outage_lock:
            if not self._outage.down:
                return
            self._outage.recovered()
            lasted = time.monotonic() - self._down_since
            failed = self.backend_errors - self._errors_before
        logger.warning(
            "the backend answers again after %.1f s (%d failed calls); taking jobs again",
            lasted,
            failed,
        )

    # -- the loop ----------------------------------------------------------------------------

    def _stopping(self, generation: int | None = None) -> bool:
        """True once told to stop (or, for a thread of an earlier run, once that run ended)."""
        if generation is not None and generation != self._generation:
            return True
        return self._stop_requested or self._stop.is_set()

    def _spawn(self) -> None:
        """A new slot thread (call with ``_cond`` held)."""
        thread = threading.Thread(
            target=self._slot,
            args=(self._burst, self._generation),
            name=f"notifycore-worker-{len(self._slots) + len(self._stuck)}",
            daemon=True,
        )
        self._slots.append(thread)
        thread.start()

    def _slot(self, burst: bool, generation: int) -> None:
        me = threading.current_thread()
        # Prefetched jobs, and finished ones acked with the next reservation.
        batch = self._batch()
        try:
            while not self._stopping(generation):
                try:
                    taken = self._next(batch, None if burst else self.poll)
                except Exception as error:  # an outage must not kill the thread: wait, try again
                    self._stop.wait(self._backend_failed("reserving a job", error))
                    continue
                self._backend_ok()
                if taken is None:
                    if burst:
                        return
                    continue
                job, age = taken
                running = _Running(job, me, batch=batch)
                with self._cond:
                    self._running[me] = running
                    if self._stopping(generation):  # reserved as the stop came: never started
                        running.abandoned = True
                try:
                    if running.abandoned:
                        self._give_back([running])
                        return
                    outcome = self._process(job, running, batch, age)
                except Exception as error:  # e.g. the broker went away before the ack
                    self._backend_failed(f"finishing job {job.id} (it will come back)", error)
                    outcome = None
                finally:
                    # No wake-up: a job that ended changes none of the times the watcher
                    # waits for (it looks again when it wakes), and stop() waits for threads.
                    with self._cond:
                        if self._running.get(me) is running:
                            del self._running[me]
                if running.abandoned:
                    return  # the watcher or a stop took the job over: this thread is done
                if outcome is not None:
                    self._record(outcome)
        finally:
            self._settle(batch)
            with self._cond:
                self._cond.notify_all()

    def _watch(self) -> None:
        """Fail the try of every consumer past its time limit and put a new thread in its place."""
        while True:
            lingering: list[_Batch] = []
            with self._cond:
                while True:
                    if not self._watching or not (self._running or self._busy()):
                        return
                    now = time.monotonic()
                    held = [
                        r for r in self._running.values() if not r.finishing and not r.abandoned
                    ]
                    overdue = [r for r in held if r.deadline <= now]
                    if overdue:
                        self._abandon(overdue)
                        break
                    # A job that runs long does not keep its batch waiting: the acks of
                    # the jobs before it go now, and the prefetched ones back.
                    waiting = [
                        (r.started + r.batch.window, r.batch)
                        for r in held
                        if r.batch is not None and r.batch.busy()
                    ]
                    lingering = [batch for due, batch in waiting if due <= now]
                    if lingering:
                        break
                    nearest = min(
                        [r.deadline for r in held] + [due for due, _ in waiting], default=math.inf
                    )
                    wait = min(nearest - now, 1.0)
                    self._watch_until = now + wait
                    try:
                        self._cond.wait(wait)
                    finally:
                        self._watch_until = -math.inf
            for batch in lingering:
                self._settle(batch)
            for running in overdue:
                try:
                    self._time_out(running)
                finally:
                    with self._cond:
                        self._concluding -= 1
                        self._cond.notify_all()

    def _abandon(self, overdue: list[_Running]) -> None:
        """Leave the threads of ``overdue`` jobs behind; replace them, or give up when every
        slot is stuck (call with ``_cond`` held, so that the worker never looks idle between)."""
        for running in overdue:
            running.abandoned = True
            del self._running[running.thread]
            if running.thread in self._slots:
                self._slots.remove(running.thread)
            self._stuck.append(running.thread)
            self._concluding += 1
        self._stuck = [t for t in self._stuck if t.is_alive()]
        if len(self._stuck) >= self.concurrency:
            if not self.exhausted:
                self.exhausted = True
                self._stop.set()
                logger.critical(
                    "%d thread(s) stuck in consumers past their time limit, as many as the worker "
                    "has: it takes no more jobs; restart its process",
                    len(self._stuck),
                )
            return
        if not self._stopping():
            for _ in overdue:
                self._spawn()

    def _time_out(self, running: _Running) -> None:
        hub, registration, event = running.hub, running.registration, running.event
        assert hub is not None and registration is not None and event is not None
        error = ConsumerTimeout(registration.name, hub.label, running.timeout)
        logger.error(
            "job %s of queue %s: %s; its thread is left to it (Python cannot stop a thread)",
            running.job.id,
            running.job.queue,
            error,
        )
        self.delivery.report_error(hub, registration, event, error)
        try:
            self._record(self._conclude(running.job, registration, error))
        except Exception as failure:
            self._backend_failed(f"finishing job {running.job.id} (it will come back)", failure)
        if running.batch is not None:  # its thread may never come back to ack or give back
            self._settle(running.batch)

    def start(self, *, burst: bool = False) -> Worker:
        """Start ``concurrency`` threads (and the watcher of time limits); returns at once."""
        if self.running:
            raise ConfigurationError("this worker is already running")
        self._stop.clear()
        self._stop_requested = self._stop_now = False
        self.exhausted = False
        self.fatal = None
        self._burst = burst
        self._outage = Outage(self.delivery.backend)
        with self._cond:
            self._generation += 1  # threads of an earlier run that linger do not come back
            self._slots = []
            self._watching = True
            for _ in range(self.concurrency):
                self._spawn()
        self._watcher = threading.Thread(
            target=self._watch, name="notifycore-worker-watcher", daemon=True
        )
        self._watcher.start()
        return self

    def request_stop(self, reason: str = "stop requested", *, now: bool = False) -> None:
        """Ask :meth:`run` to stop (safe in a signal handler: it only sets flags).

        The first request lets the jobs in flight finish within the grace
        period; ``now=True`` gives them back to the queue at once.
        """
        self._stop_reason = reason
        self._stop_now = self._stop_now or now
        self._stop_requested = True

    def _busy(self) -> bool:
        return self._concluding > 0 or any(t.is_alive() for t in self._slots)

    def stop(self, grace: float | None = None) -> int:
        """Stop taking jobs and wait ``grace`` seconds at most for the jobs in flight.

        ``grace`` defaults to the worker's grace period. Jobs still running at
        the deadline (or at once after ``request_stop(now=True)``) go back to
        their queue, visible again, their try not counted where the backend
        allows (``release``); their threads are left behind. Returns how many
        jobs went back.
        """
        grace = self.grace if grace is None else grace
        self._stop_requested = True
        self._stop.set()
        deadline = time.monotonic() + grace
        with self._cond:
            self._cond.notify_all()
            while self._busy() and not self._stop_now:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
            held = [r for r in self._running.values() if not r.finishing and not r.abandoned]
            for r in held:
                r.abandoned = True
                del self._running[r.thread]
                self._stuck.append(r.thread)
                if r.thread in self._slots:
                    self._slots.remove(r.thread)
        if held:
            why = (
                f"{self._stop_reason}: stopping now"
                if self._stop_now
                else f"the grace period ({grace:g} s) is over"
            )
            logger.warning("%s: giving %d job(s) in flight back to the queue", why, len(held))
        returned = self._give_back(held)
        for r in held:  # their threads may never come back to ack or give back
            if r.batch is not None:
                self._settle(r.batch)
        # Threads that were waiting for a job end within a poll (one that gets a job now
        # gives it back); the watcher ends with them.
        until = time.monotonic() + self.poll + 0.5
        for thread in self._slots:
            thread.join(max(until - time.monotonic(), 0))
        with self._cond:
            self._slots = [t for t in self._slots if t.is_alive()]
            self._watching = False
            self._cond.notify_all()
        return returned

    def _give_back(self, held: list[_Running]) -> int:
        returned = 0
        for running in held:
            try:
                released = self.delivery.backend.release(running.job)
            except Exception as error:  # it comes back after its visibility timeout instead
                self._backend_failed(f"giving job {running.job.id} back", error)
                continue
            if released:
                returned += 1
                self._record(JobOutcome.RELEASED)
        return returned

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every thread ended (after :meth:`stop`, or a burst run that drained)."""
        for thread in list(self._slots):
            thread.join(timeout)
        return not self._busy()

    @property
    def running(self) -> bool:
        """True while a thread of the worker takes or runs jobs."""
        return self._busy()

    @property
    def stuck_threads(self) -> list[threading.Thread]:
        """Threads left behind in consumers (past their time limit, or at a stop)."""
        return [t for t in self._stuck if t.is_alive()]

    def run(self, *, burst: bool = False) -> None:
        """Block until :meth:`request_stop` (from a signal handler, say), exhaustion, or
        drained in burst mode; then :meth:`stop` within the grace period. A configuration
        error the backend reported (:attr:`fatal`) stops it too, and is raised here."""
        self.start(burst=burst)
        try:
            # Polled, not waited on: a signal handler may not take the lock a wait needs.
            # Joining a thread for a while ends at once when it does (a burst that drained).
            while self.running and not self._stop_requested and not self.exhausted:
                alive = [t for t in list(self._slots) if t.is_alive()]
                if alive:
                    alive[0].join(0.1)
                else:
                    time.sleep(0.01)
            if self._stop_requested and not self._stop_now:
                logger.warning(
                    "%s: finishing the jobs in flight (at most %g s), taking no new ones",
                    self._stop_reason,
                    self.grace,
                )
        finally:
            self.stop()
        if self.fatal is not None:
            raise self.fatal
