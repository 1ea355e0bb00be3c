"""The RabbitMQ backend, through kombu: stream queues for history, quorum queues for jobs.

**Streams** are RabbitMQ stream queues (``x-queue-type: stream``). A message's
id is its stream offset, so a browser's ``Last-Event-ID`` is where a consumer
re-attaches (``x-stream-offset``). AMQP 0-9-1 does not tell a publisher the
offset it got, so each connection keeps a *tail* consumer on a stream it
publishes to and waits for its own messages (known by a token in
``message_id``) to come back: that is the id, and the proof the message is
stored. A read attaches at the reader's id itself and checks that message is
still there: when retention dropped it, the read reports a reset. Offsets are
not consecutive (RabbitMQ spends some on its own records), so a gap alone
proves nothing. AMQP 0-9-1 does not say where a stream ends either: a read
stops after ``read_quiet`` seconds without a delivery.

**Queues** are durable quorum queues with persistent messages, published with
confirms. A job is reserved by ``basic.get``, or by a consumer (prefetch
``prefetch`` per connection) when the reservation may wait, and acked only
after the consumer ran. The visibility timeout is kept by the process that
reserved: a reservation that outlived it is returned to the queue
(``basic.reject`` with requeue) by a *keeper* thread, which also sends the
connections' AMQP heartbeats while their threads run consumers. When a
worker's connection closes (a crash, SIGKILL) or goes silent (a frozen
process: no heartbeats), RabbitMQ itself hands its unacked jobs out again.
Attempts are the ``x-nc-attempts`` header plus the quorum queue's
``x-delivery-count``, so deliveries lost to crashes count too.

Retries and delayed jobs wait in per-delay queues: classic queues with a
message TTL whose dead-letter route leads back to the job queue. Delays are a
fixed set of buckets; a job carries its not-before time and, when a bucket
brought it back early, is sent round again for the rest. Dead letters are a
classic queue per job queue. Only JSON job payloads are taken
(``content_type``); anything else goes to the dead letters unread, never
unpickled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import amqp
import amqp.exceptions
from kombu import connection as kombu_connection
from kombu import exceptions as kombu_exceptions

from notify_amqp.plugin import DEFAULT_URL
from notifycore.backends.base import (
    Backend,
    DeadLetter,
    Job,
    Outage,
    StreamMessage,
    StreamRead,
    id_number,
)
from notifycore.errors import BackendError, BackendUnavailable, ConfigurationError, InvalidStreamId

__all__ = ["DELAY_BUCKETS", "AmqpBackend"]

#: kombu's Connection (kombu is not typed throughout; its objects are ``Any`` here).
KombuConnection: Any = kombu_connection.Connection

logger = logging.getLogger("notify_amqp")
T = TypeVar("T")

#: The per-delay queues, in milliseconds. A delay waits in the longest bucket not
#: longer than it, then goes round again for what is left.
DELAY_BUCKETS = (100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 1_800_000)
#: Payload types a job may have; anything else is dead-lettered unread.
ACCEPT = ("application/json", "")
#: Deliveries a stream consumer may hold before acking (streams need manual acks).
STREAM_CREDIT = 500
#: How long a publisher waits for its messages to come back from a stream.
PUBLISH_TIMEOUT = 30.0
#: Longest a stream read goes on beyond its wait for a first message.
READ_CAP = 2.0
#: Idle lifetime of a de-duplication key's queue (its marker expires with the ttl).
DONE_EXPIRES_MS = 7 * 24 * 3600 * 1000

_QUEUE_DECLARE = (50, 10)
_ATTEMPTS = "x-nc-attempts"
_ERROR = "x-nc-error"
_NOT_BEFORE = "x-nc-not-before"
_FAILED_AT = "x-nc-failed-at"


_CREDENTIALS = re.compile(r"(://[^:/@;]*:)[^;]*@")


def _safe(url: str) -> str:
    """The URL(s) without passwords, for messages and logs (kombu's ``a;b`` failover lists
    too; a password may hold any character but ``;``)."""
    return ";".join(_CREDENTIALS.sub(r"\1***@", part) for part in url.split(";"))


def _parse_id(value: str) -> int:
    """A stream id: the message's stream offset plus one, so ``"0"`` is before the first."""
    number = id_number(value)
    if number is not None:
        return number
    raise InvalidStreamId(f"not a RabbitMQ stream id: {value!r}")


def _offset(message: Any) -> int:
    return int(_headers(message)["x-stream-offset"])


def _id(offset: int | None) -> str:
    assert offset is not None
    return str(offset + 1)


def _headers(message: Any) -> dict[str, Any]:
    return dict(message.properties.get("application_headers") or {})


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _recovering(exc: BaseException) -> bool:
    """RabbitMQ's answer about a durable queue or stream that its node has not brought back
    yet, after a restart: 404 "home node ... is down or inaccessible". It passes."""
    return isinstance(exc, amqp.exceptions.NotFound) and "down or inaccessible" in str(exc)


#: basic.ack, basic.reject and basic.nack wait for no answer: RabbitMQ's refusal of one
#: arrives later, as the close of its channel.
_UNANSWERED = {(0, 0), (60, 80), (60, 90), (60, 120)}


def _closed_by_broker(exc: BaseException) -> bool:
    """A channel RabbitMQ closed on its own (a consumer timeout: method 0, 0) or over an ack
    it no longer took. py-amqp opens such a channel again, but without its consumers and
    unacked deliveries, so the connection's state is no longer what notifycore holds."""
    return (
        isinstance(exc, amqp.exceptions.ChannelError)
        and getattr(exc, "method_sig", None) in _UNANSWERED
    )


@dataclass(slots=True)
class _Lease:
    channel: Any
    tag: int
    deadline: float
    queue: str
    generation: int


@dataclass(slots=True)
class _Tail:
    """A consumer on a stream this connection publishes to: it reports our offsets."""

    channel: Any
    waiting: dict[str, int | None] = field(default_factory=dict)
    unacked: int = 0
    last_tag: int = 0

    def ack(self) -> None:
        """Ack what came so far: RabbitMQ's consumer timeout also applies to stream deliveries."""
        if self.unacked:
            self.channel.basic_ack(self.last_tag, multiple=True)
            self.unacked = 0


class _Counts:
    """Publisher confirms and returns seen on a link's channels."""

    def __init__(self) -> None:
        self.confirmed = 0
        self.nacked = 0
        self.returned = 0  # mandatory messages RabbitMQ could not route (a queue is gone)

    def on_ack(self, tag: int, multiple: bool) -> None:
        self.confirmed = max(self.confirmed, tag)

    def on_nack(self, tag: int, multiple: bool) -> None:
        self.confirmed = max(self.confirmed, tag)
        self.nacked += 1

    def on_return(self, *args: Any) -> None:
        self.returned += 1


class _Link:
    """One AMQP connection, used by one thread at a time (``lock``); jobs remember theirs.

    A link lives as long as its thread: when the thread ends, the link is collected and
    its connection closed, so jobs it held go back to RabbitMQ.
    """

    def __init__(self, backend: AmqpBackend, number: int) -> None:
        self.backend = backend
        self.number = number
        self.lock = threading.RLock()
        self.box: list[Any] = [None]  # the connection, where the finalizer can find it
        self.channel: Any = None  # gets, acks, stream publishing
        self.confirming: Any = None  # confirmed publishing of jobs
        self.probe: Any = None  # declarations (a refusal closes the channel)
        self.jobs: Any = None  # consumers of job queues
        self.generation = 0
        self.confirm_seq = 0
        self.counts = _Counts()
        self.leases: dict[str, _Lease] = {}
        #: Jobs a consumer delivered that no reserve took yet, with when they came.
        self.buffers: dict[str, deque[tuple[float, Any]]] = {}
        self.consumers: dict[str, str] = {}
        self.tails: dict[str, _Tail] = {}
        self.hold = 30.0  # how long a buffered job may wait: the last visibility timeout
        weakref.finalize(self, _release, self.box)

    @property
    def conn(self) -> Any:
        return self.box[0]

    @conn.setter
    def conn(self, value: Any) -> None:
        self.box[0] = value

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> amqp.Connection:
        if self.conn is not None and not self.conn.connected:
            # The connection ended (py-amqp saw it): start afresh, rather than let kombu
            # reconnect silently under channels and reservations of the old one.
            self.reset()
        if self.conn is None or self.channel is None:
            if self.conn is None:
                self.conn = self.backend._connect()
            # The channels' callbacks see only ``counts``, never the link: a link must not
            # be kept alive by its own connection once its thread is gone.
            counts = self.counts = _Counts()
            self.channel = self.conn.channel()
            self.channel.events["basic_return"].add(counts.on_return)
            self.confirming = self.conn.channel()
            self.confirming.confirm_select()
            self.confirming.events["basic_ack"].add(counts.on_ack)
            self.confirming.events["basic_nack"].add(counts.on_nack)
            self.confirming.events["basic_return"].add(counts.on_return)
            self.confirm_seq = 0
        return self.conn.connection

    def reset(self) -> None:
        """Forget the connection (broken or closing): its reservations go back to RabbitMQ."""
        conn, self.conn = self.conn, None
        self.channel = self.confirming = self.probe = self.jobs = None
        self.generation += 1
        self.leases.clear()
        self.buffers.clear()
        self.consumers.clear()
        self.tails.clear()
        _release([conn])

    def repair(self) -> None:
        """After RabbitMQ closed a channel (the connection lives on), replace what closed."""
        if self.conn is None or not self.conn.connected:
            self.reset()
            return
        if self.probe is not None and not self.probe.is_open:
            self.probe = None
        if self.jobs is not None and not self.jobs.is_open:
            self.jobs = None
            self.consumers.clear()
            self.buffers.clear()
        self.leases = {r: lease for r, lease in self.leases.items() if lease.channel.is_open}
        self.tails = {n: tail for n, tail in self.tails.items() if tail.channel.is_open}
        for channel in (self.channel, self.confirming):
            if channel is not None and not channel.is_open:
                self.channel = None  # connect() opens both again
                self.leases = {
                    r: lease for r, lease in self.leases.items() if lease.channel is not channel
                }

    def probe_channel(self) -> Any:
        self.connect()
        if self.probe is None or not self.probe.is_open:
            assert self.conn is not None
            self.probe = self.conn.channel()
        return self.probe

    def drain(self, timeout: float) -> bool:
        """Read what the server sent, waiting ``timeout`` seconds at most; False on a timeout.

        Heartbeats go on meanwhile: a thread waiting here for a job keeps its connection."""
        return _read(self.connect(), timeout, self.backend.beat)

    def tend(self, now: float) -> None:
        """What the link's thread does while it waits, done while it is busy elsewhere (in a
        consumer): read what RabbitMQ sent (its heartbeats, deliveries to our consumers),
        send a heartbeat when one is due, ack what the tails saw, and give back reservations
        past their visibility timeout."""
        if self.conn is None or not self.conn.connected:
            return
        connection = self.conn.connection
        for _ in range(64):  # what has arrived; the rest waits for the next round
            if not _read(connection, 0.0, self.backend.beat):
                break
        for tail in self.tails.values():
            tail.ack()
        self.sweep(now)

    # -- confirmed publishing -----------------------------------------------------------------

    def publish_confirmed(self, items: list[tuple[str, amqp.Message]]) -> None:
        self.connect()
        counts = self.counts
        nacked, returned = counts.nacked, counts.returned
        for routing_key, message in items:
            self.confirming._basic_publish(
                message, exchange="", routing_key=routing_key, mandatory=True
            )
            self.confirm_seq += 1
        deadline = time.monotonic() + PUBLISH_TIMEOUT
        while counts.confirmed < self.confirm_seq:
            if time.monotonic() > deadline:
                raise BackendUnavailable("RabbitMQ did not confirm a publish in time")
            self.drain(deadline - time.monotonic())
        if counts.returned != returned:
            raise amqp.exceptions.NotFound("a queue notifycore declared is gone")
        if counts.nacked != nacked:
            raise BackendError("RabbitMQ refused (nacked) a published message")

    # -- leases -------------------------------------------------------------------------------

    def sweep(self, now: float) -> None:
        """Return reservations whose visibility timeout ran out to their queue, and jobs
        a consumer delivered that waited longer than that for a reserve. The consumers
        are cancelled first, so RabbitMQ hands those jobs to someone else."""
        expired = [r for r, lease in self.leases.items() if lease.deadline <= now]
        stale = any(b and b[0][0] + self.hold <= now for b in self.buffers.values())
        if not expired and not stale:
            return
        if self.jobs is not None and self.jobs.is_open:
            for tag in self.consumers.values():
                self.jobs.basic_cancel(tag)
            for buffer in self.buffers.values():
                for _, message in buffer:
                    self.jobs.basic_reject(message.delivery_info["delivery_tag"], requeue=True)
        self.consumers.clear()
        self.buffers.clear()
        for receipt in expired:
            lease = self.leases.pop(receipt)
            if lease.generation == self.generation and lease.channel.is_open:
                lease.channel.basic_reject(lease.tag, requeue=True)


def _read(connection: amqp.Connection, timeout: float, beat: float) -> bool:
    """Read one method from ``connection`` within ``timeout`` seconds (False if none came),
    sending heartbeats when due at least every ``beat`` seconds. (py-amqp's
    ``drain_events`` starts its timeout again after each heartbeat frame the server sends,
    so with short heartbeats it would never time out.)"""
    deadline = time.monotonic() + max(timeout, 0.0)
    while True:
        connection.heartbeat_tick()  # raises ConnectionForced when the server went silent
        left = deadline - time.monotonic()
        try:
            if connection.blocking_read(max(min(left, beat), 0.0)):
                return True
        except TimeoutError:
            if time.monotonic() >= deadline:
                return False
        # A heartbeat or part of a message came: read on (with no wait once past the
        # deadline) until a whole method is in or nothing more is there.


def _keep(ref: weakref.ref[AmqpBackend], stop: threading.Event) -> None:
    """The keeper thread: tend every link while the backend lives and is open."""
    while True:
        backend = ref()
        if backend is None:
            return
        every = backend.beat
        del backend  # only a weak reference between rounds: the backend may go
        if stop.wait(every):
            return
        backend = ref()
        if backend is None:
            return
        backend._tend()
        del backend


def _release(box: list[Any]) -> None:
    """Close a link's connection (from ``reset`` or when its thread ended)."""
    conn, box[0] = box[0], None
    if conn is not None:
        try:
            conn.release()
        except Exception as exc:  # it is gone either way; no traceback for a dead connection
            logger.debug("closing a RabbitMQ connection failed: %s", exc)


class AmqpBackend(Backend):
    """Streams and queues in RabbitMQ, shared by every process and machine that uses it."""

    name = "amqp"
    shared = True
    connection_errors = (
        amqp.exceptions.ConnectionError,
        amqp.exceptions.RecoverableConnectionError,
        OSError,
        EOFError,
    )
    release_keeps_tries = True

    def __init__(
        self,
        url: str | None = None,
        *,
        stream_maxlen: int = 10_000,
        stream_max_age: float = 0.0,
        stream_max_bytes: int = 100_000_000,
        stream_segment_bytes: int = 8_000_000,
        prefix: str = "notifycore.",
        prefetch: int = 0,
        retries: int = 3,
        read_quiet: float = 0.05,
        heartbeat: int = 20,
        recovery_wait: float = 30.0,
    ) -> None:
        super().__init__(
            url or DEFAULT_URL, stream_maxlen=stream_maxlen, stream_max_age=stream_max_age
        )
        assert self.url is not None
        self._url: str = self.url
        self.safe_url = _safe(self._url)
        if not self._url.startswith(("amqp://", "amqps://", "pyamqp://")):
            raise ConfigurationError(f"AMQP_URL must be an amqp:// URL, not {self.safe_url!r}")
        self.stream_max_bytes = stream_max_bytes
        self.stream_segment_bytes = stream_segment_bytes
        self.prefix = prefix
        self.prefetch = prefetch
        self.retries = retries
        self.read_quiet = read_quiet
        self.heartbeat = heartbeat
        self.recovery_wait = recovery_wait
        #: How often heartbeats are looked after (py-amqp wants a tick about every second).
        self.beat = min(max(heartbeat / 4, 0.05), 1.0) if heartbeat else 1.0
        self._lock = threading.Lock()
        # Weak: a link belongs to its thread (``_local``) and goes when the thread ends.
        self._links: weakref.WeakValueDictionary[int, _Link] = weakref.WeakValueDictionary()
        self._local = threading.local()
        self._numbers = iter(range(1, 1 << 62))
        self._declared: set[str] = set()
        self._checked = False
        self._closed = False
        self._keeper: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def from_settings(cls, settings: Any) -> Self:
        return cls(
            cls._url_setting(
                settings, "AMQP_URL", DEFAULT_URL, ("amqp://", "amqps://", "pyamqp://")
            ),
            **cls._stream_settings(settings),
            stream_max_bytes=settings.get("AMQP_STREAM_MAX_BYTES", 100_000_000),
            stream_segment_bytes=settings.get("AMQP_STREAM_SEGMENT_BYTES", 8_000_000),
            prefix=settings.get("AMQP_PREFIX", "notifycore."),
            prefetch=settings.get("AMQP_PREFETCH", 0),
            retries=settings.get("AMQP_RETRIES", 3),
            read_quiet=settings.get("AMQP_READ_QUIET", 0.05),
            heartbeat=settings.get("AMQP_HEARTBEAT", 20),
            recovery_wait=settings.get("AMQP_RECOVERY_WAIT", 30.0),
        )

    def __repr__(self) -> str:
        return f"<AmqpBackend {self.safe_url}>"

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        with self._lock:
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            with link.lock:
                link.reset()

    # -- connections --------------------------------------------------------------------------

    def _connect(self) -> Any:
        """A new connection (kombu retries the connect); checks the server once."""
        conn = KombuConnection(self._url, connect_timeout=2.0, heartbeat=self.heartbeat)
        try:
            conn.ensure_connection(
                max_retries=self.retries, interval_start=0.05, interval_step=0.25
            )
        except (kombu_exceptions.OperationalError, *conn.connection_errors) as exc:
            conn.release()
            raise BackendUnavailable(
                f"RabbitMQ at {self.safe_url} is unavailable (after {self.retries} retries): {exc}"
            ) from exc
        if not self._checked:
            self._check_server(conn)
        return conn

    def _check_server(self, conn: Any) -> None:
        """Refuse a server without stream queues at once, instead of losing history later."""
        version = _text(conn.connection.server_properties.get("version", ""))
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if len(numbers) == 2 and numbers < (3, 9):
            conn.release()
            raise ConfigurationError(
                f"RabbitMQ {version} at {self.safe_url} has no stream queues (3.9 or newer is "
                "needed): notifycore keeps event history in streams and will not run without them"
            )
        self._checked = True

    def _link(self) -> _Link:
        link: _Link | None = getattr(self._local, "link", None)
        if link is None or link.number not in self._links:
            if self._closed:
                raise BackendError("this AmqpBackend is closed")
            link = _Link(self, next(self._numbers))
            with self._lock:
                self._links[link.number] = link
                if self._keeper is None:
                    self._keeper = threading.Thread(
                        target=_keep,
                        args=(weakref.ref(self), self._stop),
                        name="notify-amqp-keeper",
                        daemon=True,
                    )
                    self._keeper.start()
            self._local.link = link
        return link

    def _tend(self) -> None:
        """One round of the keeper: tend each link its thread is not using right now."""
        now = time.monotonic()
        with self._lock:
            links = list(self._links.values())
        for link in links:
            if link.conn is None or not link.lock.acquire(blocking=False):
                continue
            try:
                link.tend(now)
            except (*self.connection_errors, amqp.exceptions.AMQPError) as exc:
                # The connection died, or RabbitMQ closed one of its channels: start afresh
                # (its jobs go back to RabbitMQ). Its thread learns it at its next call.
                logger.debug("RabbitMQ connection %d given up: %s", link.number, exc)
                link.reset()
            except Exception:
                logger.exception("looking after RabbitMQ connection %d failed", link.number)
                link.reset()
            finally:
                link.lock.release()

    def _run(self, what: str, call: Callable[[_Link], T], link: _Link | None = None) -> T:
        """Run ``call`` on a connection; reconnect and try again after a connection error
        (``retries`` times), and wait for a queue a restarted node is still recovering
        (``recovery_wait`` seconds), with back-off."""
        link = link or self._link()
        delay = 0.05
        failures = 0
        recovering_since: float | None = None
        while True:
            with link.lock:
                try:
                    link.connect()
                    return call(link)
                except amqp.exceptions.NotFound as exc:
                    link.repair()
                    with self._lock:
                        self._declared.clear()
                    if _recovering(exc):
                        now = time.monotonic()
                        if recovering_since is None:
                            recovering_since = now
                            logger.debug("RabbitMQ is recovering (%s); waiting", exc)
                        elif now - recovering_since >= self.recovery_wait:
                            raise BackendUnavailable(
                                f"RabbitMQ at {self.safe_url} did not recover what {what} needs "
                                f"within {self.recovery_wait:g} s: {exc}"
                            ) from exc
                    else:
                        # A queue or stream was deleted behind our back: declare again at once.
                        failures += 1
                        if failures > self.retries:
                            raise BackendError(
                                f"RabbitMQ at {self.safe_url}: {what}: {exc}"
                            ) from exc
                        continue
                except (*self.connection_errors, amqp.exceptions.ChannelError) as exc:
                    if not isinstance(exc, self.connection_errors) and not _closed_by_broker(exc):
                        link.repair()  # RabbitMQ refused this call on its channel; the rest lives
                        raise BackendError(
                            f"RabbitMQ at {self.safe_url} refused {what}: {exc}"
                        ) from exc
                    link.reset()
                    failures += 1
                    if failures > self.retries:
                        raise BackendUnavailable(
                            f"RabbitMQ at {self.safe_url} is unavailable ({what}, after "
                            f"{self.retries} retries): {exc}"
                        ) from exc
                except amqp.exceptions.AMQPError as exc:
                    link.repair()
                    raise BackendError(
                        f"RabbitMQ at {self.safe_url} refused {what}: {exc}"
                    ) from exc
            time.sleep(delay)
            delay = min(delay * 4, 1.0)

    # -- names and declarations -------------------------------------------------------------

    def _name(self, kind: str, name: str) -> str:
        full = f"{self.prefix}{kind}{name}"
        # AMQP allows 255 bytes; leave room for ".dead" and ".delay.<ms>".
        if len(full.encode()) > 230:
            digest = hashlib.sha256(name.encode()).hexdigest()[:32]
            full = f"{self.prefix}{kind}{name.encode()[:150].decode(errors='ignore')}~{digest}"
        return full

    def _declare(self, link: _Link, name: str, arguments: dict[str, Any]) -> str:
        """Declare once per process, on the link's probe channel: a refusal closes only it."""
        if name in self._declared:
            return name
        stream = arguments.get("x-queue-type") == "stream"
        try:
            link.probe_channel().queue_declare(
                name, durable=True, auto_delete=False, arguments=arguments
            )
        except amqp.exceptions.AMQPError as exc:
            link.probe = None
            if getattr(exc, "method_sig", None) != _QUEUE_DECLARE or _recovering(exc):
                # Not RabbitMQ's answer to this declaration (a channel it closed on its own,
                # a lost connection), or a queue a restarted node has not recovered yet: a
                # passing state that ``_run`` waits out, never a configuration error.
                raise
            self._refused(name, stream, exc)
        with self._lock:
            self._declared.add(name)
        return name

    def _refused(self, name: str, stream: bool, exc: amqp.exceptions.AMQPError) -> None:
        """RabbitMQ refused to declare ``name``: keep an existing stream, or say what is wrong."""
        if isinstance(exc, amqp.exceptions.PreconditionFailed):
            if stream and "x-queue-type" not in str(exc):
                # An existing stream declared with other retention: keep it (a policy
                # changes retention of existing streams), but say so.
                logger.warning("stream %s exists with other arguments (%s); using it", name, exc)
                return
            raise ConfigurationError(
                f"RabbitMQ refused to declare {name!r} as notifycore needs it: {exc}"
            ) from exc
        if not stream or isinstance(exc, amqp.exceptions.RecoverableConnectionError):
            raise exc
        # What a server without streams answers (541 "the corresponding feature flag is
        # disabled", which also closes the connection).
        raise ConfigurationError(
            f"RabbitMQ at {self.safe_url} cannot create the stream queue {name!r} "
            f"({exc}): notifycore keeps event history in RabbitMQ streams "
            "(3.9 or newer, feature flag stream_queue enabled)"
        ) from exc

    def _stream(self, link: _Link, stream: str) -> str:
        arguments: dict[str, Any] = {
            "x-queue-type": "stream",
            "x-max-length-bytes": self.stream_max_bytes,
            "x-stream-max-segment-size-bytes": self.stream_segment_bytes,
        }
        if self.stream_max_age:
            arguments["x-max-age"] = f"{max(int(self.stream_max_age), 1)}s"
        return self._declare(link, self._name("stream.", stream), arguments)

    def _queue(self, link: _Link, queue: str) -> str:
        return self._declare(link, self._name("", queue), {"x-queue-type": "quorum"})

    def _dead_queue(self, link: _Link, queue: str) -> str:
        return self._declare(link, self._name("", queue) + ".dead", {"x-queue-type": "classic"})

    def _delay_queue(self, link: _Link, queue: str, bucket: int) -> str:
        target = self._queue(link, queue)
        return self._declare(
            link,
            f"{target}.delay.{bucket}",
            {
                "x-queue-type": "classic",
                "x-message-ttl": bucket,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": target,
            },
        )

    # -- streams ------------------------------------------------------------------------------

    def publish(self, stream: str, data: bytes) -> str:
        return self.publish_many(stream, [data])[0]

    def publish_many(self, stream: str, items: Iterable[bytes]) -> list[str]:
        payloads = list(items)
        if not payloads:
            return []
        tokens = [uuid.uuid4().hex for _ in payloads]
        since = datetime.now(UTC).timestamp() - 2.0
        sent = False

        def call(link: _Link) -> list[str]:
            nonlocal sent
            name = self._stream(link, stream)
            tail = self._tail(link, name)
            missing = tokens
            if sent:  # a retry after a lost connection: what arrived must not go twice
                found = self._find_tokens(link, name, since, set(tokens))
                tail.waiting.update(found)
                missing = [t for t in tokens if t not in found]
            for token in missing:
                tail.waiting[token] = None
            sent = True  # from the first message on, a retry must look before sending
            returned = link.counts.returned
            for token, data in zip(tokens, payloads, strict=True):
                if token in missing:
                    message = amqp.Message(data, message_id=token, delivery_mode=2)
                    link.channel.basic_publish(
                        message, exchange="", routing_key=name, mandatory=True
                    )
            deadline = time.monotonic() + PUBLISH_TIMEOUT
            while any(tail.waiting.get(t) is None for t in tokens):
                if link.counts.returned != returned:
                    raise amqp.exceptions.NotFound(f"stream queue {name!r} is gone")
                if time.monotonic() > deadline:
                    raise BackendUnavailable(f"stream {stream!r} did not store a publish in time")
                link.drain(deadline - time.monotonic())
            # Acked now (and by the keeper while idle), not left to RabbitMQ's consumer timeout.
            tail.ack()
            return [_id(tail.waiting.pop(t)) for t in tokens]

        return self._run("publish", call)

    def _tail(self, link: _Link, name: str) -> _Tail:
        tail = link.tails.get(name)
        if tail is None:
            assert link.conn is not None
            channel = link.conn.channel()
            channel.basic_qos(0, STREAM_CREDIT, False)
            tail = _Tail(channel)

            def delivered(message: Any) -> None:
                token = _text(message.properties.get("message_id", ""))
                if token in tail.waiting:
                    tail.waiting[token] = _offset(message)
                tail.last_tag = message.delivery_info["delivery_tag"]
                tail.unacked += 1
                if tail.unacked >= STREAM_CREDIT // 2:
                    tail.ack()

            channel.basic_consume(name, callback=delivered, arguments={"x-stream-offset": "next"})
            link.tails[name] = tail
        return tail

    def _find_tokens(
        self, link: _Link, name: str, since: float, tokens: set[str]
    ) -> dict[str, int | None]:
        """Offsets of the messages with these tokens published since ``since`` (epoch seconds)."""
        found: dict[str, int | None] = {}
        start = datetime.fromtimestamp(since, UTC)
        for message in self._attach(link, name, start, after=None)[0]:
            token = _text(message.properties.get("message_id", ""))
            if token in tokens:
                found[token] = _offset(message)
        return found

    def _attach(
        self,
        link: _Link,
        name: str,
        start: Any,
        *,
        after: int | None,
        limit: int | None = None,
        block: float | None = None,
        span: float | None = None,
    ) -> tuple[list[Any], bool]:
        """Deliveries of stream ``name`` from ``start`` until it goes quiet (or ``limit``).

        ``after`` is the reader's position (an id: the offset of its last message plus
        one, 0 for "before the first"). The consumer attaches at that last message
        itself and drops it; when it is not the first delivery, or does not come at
        all, it was lost to retention (or is unknown), and the second value is True.
        Only this read's own deliveries count as activity; a read never lasts longer
        than ``block`` plus a few seconds, and ``span`` cuts it that long after its
        first delivery (a stream that never goes quiet still ends the read).
        """
        assert link.conn is not None
        channel = link.conn.channel()
        credit = min(STREAM_CREDIT, (limit + 1) if limit else STREAM_CREDIT)
        expected = None if after is None else max(after - 1, 0)
        got: list[Any] = []
        state: dict[str, Any] = {"reset": False, "first": None, "last": None}

        def delivered(message: Any) -> None:
            offset = _offset(message)
            channel.basic_ack(message.delivery_info["delivery_tag"])
            now = time.monotonic()
            state["last"] = now
            if state["first"] is None:
                state["first"] = now
                if expected is not None and offset != expected:
                    state["reset"] = True
                elif after:  # the reader's own last message: seen, not returned
                    return
            if after is not None and offset < after:
                return
            got.append(message)

        quiet = self.read_quiet
        begin = time.monotonic()
        wait_first = block or quiet * 4
        hard = begin + wait_first + READ_CAP
        try:
            channel.basic_qos(0, credit, False)
            channel.basic_consume(name, callback=delivered, arguments={"x-stream-offset": start})
            while limit is None or len(got) < limit:
                now = time.monotonic()
                if now >= hard:
                    break
                if got or (state["first"] is not None and not block):
                    idle = now - state["last"]
                    if idle >= quiet or (span is not None and now - state["first"] >= span):
                        break
                    link.drain(min(quiet - idle, hard - now))
                else:
                    if now - begin >= wait_first:
                        break
                    link.drain(min(begin + wait_first - now, hard - now))
        finally:
            if channel.is_open:
                channel.close()
        if limit is not None:
            got = got[:limit]
        missing_anchor = bool(after) and state["first"] is None
        return got, bool(state["reset"] or missing_anchor)

    def read(
        self,
        stream: str,
        after: str | None = None,
        *,
        limit: int | None = None,
        block: float | None = None,
    ) -> StreamRead:
        position = None if after is None else _parse_id(after)

        def call(link: _Link) -> StreamRead:
            name = self._stream(link, stream)
            start: Any = position - 1 if position else "first"
            messages, reset = self._attach(
                link, name, start, after=position, limit=limit, block=block
            )
            return StreamRead(
                [StreamMessage(_id(_offset(m)), bytes(m.body)) for m in messages], reset
            )

        return self._run("read", call)

    def last_id(self, stream: str) -> str | None:
        def call(link: _Link) -> str | None:
            name = self._stream(link, stream)
            # The last chunk comes at once; a busy stream's later chunks are newer still.
            messages, _ = self._attach(link, name, "last", after=None, span=self.read_quiet * 4)
            return _id(max(_offset(m) for m in messages)) if messages else None

        return self._run("last_id", call)

    def id_key(self, message_id: str) -> tuple[int, ...]:
        return (_parse_id(message_id),)

    def follow(
        self,
        stream: str,
        after: str | None = None,
        *,
        stop: threading.Event | None = None,
        poll: float = 1.0,
    ) -> Iterator[StreamRead]:
        """One stream consumer on a connection of its own; through outages it reconnects
        with back-off and re-attaches at the last message it yielded."""
        position: int | None = None if after is None else _parse_id(after)
        # Without ``after``, attach at the end ("next"). Should the connection break before a
        # first message came, re-attach at the time we started instead (RabbitMQ finds the
        # chunk by its timestamp, to the second), so nothing published meanwhile is missed.
        since: datetime | None = None
        outage = Outage(self)
        while stop is None or not stop.is_set():
            conn: Any = None
            try:
                conn = self._connect()
                raw = conn.connection
                link = _Link(self, 0)
                link.conn, link.channel = conn, conn.channel()
                name = self._stream(link, stream)
                channel = conn.channel()
                channel.basic_qos(0, STREAM_CREDIT, False)
                pending: list[Any] = []
                if position is None:
                    start: Any = "next" if since is None else since
                else:
                    start = position - 1 if position else "first"
                channel.basic_consume(
                    name, callback=pending.append, arguments={"x-stream-offset": start}
                )
                if since is None:
                    since = datetime.now(UTC).replace(microsecond=0)
                outage.recovered()
                expected = None if position is None else max(position - 1, 0)
                while stop is None or not stop.is_set():
                    # Straight on this connection: a follower never reconnects silently.
                    if not _read(raw, poll, self.beat):
                        continue
                    while len(pending) < STREAM_CREDIT and _read(raw, 0.0, self.beat):
                        pass
                    if not pending:
                        continue
                    batch, pending[:] = list(pending), []
                    channel.basic_ack(batch[-1].delivery_info["delivery_tag"], multiple=True)
                    reset = False
                    messages = []
                    for message in batch:
                        offset = _offset(message)
                        if expected is not None:
                            reset = offset != expected
                            expected = None
                            if not reset and position:
                                continue  # the message we re-attached at
                        if position is not None and offset < position:
                            continue
                        messages.append(StreamMessage(_id(offset), bytes(message.body)))
                    if messages:
                        position = int(messages[-1].id)
                    if messages or reset:
                        yield StreamRead(messages, reset)
                return
            except (
                BackendUnavailable,
                *self.connection_errors,
                amqp.exceptions.ChannelError,
            ) as exc:
                if isinstance(exc, amqp.exceptions.ChannelError) and not (
                    _recovering(exc) or _closed_by_broker(exc)
                ):
                    raise
                # Down, restarting, or closed our consumer: reported once, tried again.
                if outage.wait(exc, stop):
                    return
            finally:
                if conn is not None:
                    try:
                        conn.release()
                    except Exception as exc:
                        logger.debug("closing a follower's connection failed: %s", exc)

    async def afollow(
        self, stream: str, after: str | None = None, *, poll: float = 1.0
    ) -> AsyncIterator[StreamRead]:
        """:meth:`follow` in a thread, handed over to the event loop."""
        loop = asyncio.get_running_loop()
        batches: asyncio.Queue[StreamRead | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def run() -> None:
            try:
                for batch in self.follow(stream, after, stop=stop, poll=poll):
                    loop.call_soon_threadsafe(batches.put_nowait, batch)
            except BaseException as exc:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(batches.put_nowait, exc)
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed first
                    loop.call_soon_threadsafe(batches.put_nowait, None)

        thread = threading.Thread(target=run, name=f"notify-amqp-follow-{stream}", daemon=True)
        thread.start()
        try:
            while True:
                item = await batches.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    # -- queues -------------------------------------------------------------------------------

    def _job_message(
        self, job_id: str, payload: bytes, attempts: int, *, error: str | None = None
    ) -> amqp.Message:
        headers: dict[str, Any] = {_ATTEMPTS: attempts}
        if error is not None:
            headers[_ERROR] = error
        return amqp.Message(
            payload,
            message_id=job_id,
            delivery_mode=2,
            content_type="application/json",
            application_headers=headers,
        )

    def _route(self, link: _Link, queue: str, message: amqp.Message, delay: float) -> str:
        """Where ``message`` goes to become visible after ``delay`` seconds."""
        if delay <= 0:
            message.properties["application_headers"].pop(_NOT_BEFORE, None)
            return self._queue(link, queue)
        message.properties["application_headers"][_NOT_BEFORE] = time.time() + delay
        ms = delay * 1000
        fitting = [b for b in DELAY_BUCKETS if b <= ms]
        return self._delay_queue(link, queue, fitting[-1] if fitting else DELAY_BUCKETS[0])

    def enqueue(self, queue: str, payload: bytes, *, delay: float = 0.0) -> str:
        job_id = uuid.uuid4().hex

        def call(link: _Link) -> str:
            message = self._job_message(job_id, payload, 0)
            link.publish_confirmed([(self._route(link, queue, message, delay), message)])
            return job_id

        return self._run("enqueue", call)

    def enqueue_many(self, queue: str, payloads: Iterable[bytes]) -> list[str]:
        items = [(uuid.uuid4().hex, p) for p in payloads]

        def call(link: _Link) -> list[str]:
            name = self._queue(link, queue)
            link.publish_confirmed([(name, self._job_message(i, p, 0)) for i, p in items])
            return [i for i, _ in items]

        return self._run("enqueue", call) if items else []

    def _take(self, link: _Link, queue: str, message: Any, vt: float) -> Job | None:
        """A delivered message as a reserved job; None when it was not one to run yet."""
        channel = message.channel
        tag = message.delivery_info["delivery_tag"]
        headers = _headers(message)
        attempts = int(headers.get(_ATTEMPTS, 0)) + int(headers.get("x-delivery-count", 0)) + 1
        job_id = _text(message.properties.get("message_id") or f"amqp-{tag}")
        not_before = float(headers.get(_NOT_BEFORE, 0) or 0)
        content_type = _text(message.properties.get("content_type", ""))
        if content_type not in ACCEPT:
            letter = self._job_message(job_id, bytes(message.body), attempts)
            letter.properties["application_headers"].update(
                {
                    _ERROR: f"content type {content_type!r} refused: jobs are JSON only",
                    _FAILED_AT: time.time(),
                }
            )
            self._pass_on(link, channel, tag, [(self._dead_queue(link, queue), letter)])
            return None
        remaining = not_before - time.time()
        if remaining > 0.005:  # a delay bucket brought it back early: send it round again
            again = self._job_message(job_id, bytes(message.body), attempts - 1)
            if _ERROR in headers:
                again.properties["application_headers"][_ERROR] = headers[_ERROR]
            self._pass_on(link, channel, tag, [(self._route(link, queue, again, remaining), again)])
            return None
        receipt = f"{link.number}:{uuid.uuid4().hex}"
        link.leases[receipt] = _Lease(channel, tag, time.monotonic() + vt, queue, link.generation)
        error = headers.get(_ERROR)
        return Job(
            job_id,
            queue,
            bytes(message.body),
            attempts,
            receipt,
            None if error is None else _text(error),
        )

    @staticmethod
    def _pass_on(link: _Link, channel: Any, tag: int, items: list[tuple[str, Any]]) -> None:
        """Publish (confirmed) what replaces a delivered message, then ack it; on failure
        give the message back instead of holding it."""
        try:
            link.publish_confirmed(items)
        except BaseException:
            with contextlib.suppress(Exception):
                if channel.is_open:
                    channel.basic_reject(tag, requeue=True)
            raise
        channel.basic_ack(tag)

    def _sweep_all(self) -> None:
        now = time.monotonic()
        with self._lock:
            links = list(self._links.values())
        for link in links:
            busy = link.leases or any(link.buffers.values())
            if busy and link.lock.acquire(blocking=False):
                try:
                    link.sweep(now)
                except self.connection_errors:
                    link.reset()
                finally:
                    link.lock.release()

    def _consume(self, link: _Link, queue: str, name: str) -> deque[tuple[float, Any]]:
        buffer = link.buffers.setdefault(queue, deque())
        if queue not in link.consumers:
            assert link.conn is not None
            if link.jobs is None:
                link.jobs = link.conn.channel()
                # The job a thread runs stays unacked and counts: ``prefetch`` more may wait.
                link.jobs.basic_qos(0, self.prefetch + 1, False)

            def delivered(message: Any) -> None:
                buffer.append((time.monotonic(), message))

            link.consumers[queue] = link.jobs.basic_consume(name, callback=delivered)
        return buffer

    def reserve(
        self, queue: str, *, visibility_timeout: float, block: float | None = None
    ) -> Job | None:
        self._sweep_all()
        deadline = time.monotonic() + (block or 0.0)

        def call(link: _Link) -> Job | None:
            name = self._queue(link, queue)
            link.hold = visibility_timeout
            while True:
                # A reservation that may wait is taken through a consumer (prefetch); one that
                # may not is a basic.get (first in, first out), unless this thread consumes
                # the queue already: a basic.get beside a consumer would hold more jobs than
                # its prefetch, and out of order.
                buffer = self._consume(link, queue, name) if block else link.buffers.get(queue)
                if buffer is not None and not buffer:
                    link.drain(0)
                message = buffer.popleft()[1] if buffer else None
                if message is None and queue not in link.consumers:
                    message = link.channel.basic_get(name)
                if message is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._consume(link, queue, name)
                    link.drain(min(left, 1.0))
                    continue
                job = self._take(link, queue, message, visibility_timeout)
                if job is not None:
                    return job

        return self._run("reserve", call)

    def _finish(self, job: Job, what: str, then: Callable[[_Link, _Lease], None]) -> bool:
        number, _, _ = job.receipt.partition(":")
        link = self._links.get(int(number)) if number.isdigit() else None
        if link is None:
            return False

        def call(link: _Link) -> bool:
            # First read what RabbitMQ sent: the end of a connection it gave up on (a frozen
            # process, missed heartbeats) or of a channel it closed (a consumer timeout), so
            # that the job it took back is not reported as done here.
            link.drain(0)
            link.sweep(time.monotonic())
            lease = link.leases.pop(job.receipt, None)
            if lease is None or lease.generation != link.generation:
                return False
            try:
                then(link, lease)
            except BaseException:
                # Not done: hand the job back to RabbitMQ rather than hold it unleased.
                with contextlib.suppress(Exception):
                    if lease.channel.is_open:
                        lease.channel.basic_reject(lease.tag, requeue=True)
                raise
            return True

        try:
            return self._run(what, call, link)
        except BackendUnavailable:
            return False  # the connection that held the job broke: RabbitMQ hands it out again

    def ack(self, job: Job) -> bool:
        return self._finish(job, "ack", lambda link, lease: lease.channel.basic_ack(lease.tag))

    def retry(self, job: Job, *, delay: float, error: str) -> bool:
        def then(link: _Link, lease: _Lease) -> None:
            message = self._job_message(job.id, job.payload, job.attempts, error=error)
            link.publish_confirmed([(self._route(link, job.queue, message, delay), message)])
            lease.channel.basic_ack(lease.tag)

        return self._finish(job, "retry", then)

    def release(self, job: Job) -> bool:
        # Published again with one attempt less, not rejected: a reject would count a delivery.
        def then(link: _Link, lease: _Lease) -> None:
            message = self._job_message(
                job.id, job.payload, max(job.attempts - 1, 0), error=job.last_error
            )
            link.publish_confirmed([(self._route(link, job.queue, message, 0.0), message)])
            lease.channel.basic_ack(lease.tag)

        return self._finish(job, "release", then)

    def dead_letter(self, job: Job, *, error: str) -> bool:
        def then(link: _Link, lease: _Lease) -> None:
            message = self._job_message(job.id, job.payload, job.attempts, error=error)
            message.properties["application_headers"][_FAILED_AT] = time.time()
            link.publish_confirmed([(self._dead_queue(link, job.queue), message)])
            lease.channel.basic_ack(lease.tag)

        return self._finish(job, "dead_letter", then)

    def _browse(
        self,
        queue: str,
        limit: int | None,
        act: Callable[[_Link, Any, list[Any]], T],
    ) -> T:
        """Take the dead letters (up to ``limit``) on a channel of their own, let ``act``
        ack or publish some, and close it: the rest go back in their order."""

        def call(link: _Link) -> T:
            name = self._dead_queue(link, queue)
            assert link.conn is not None
            channel = link.conn.channel()
            try:
                held: list[Any] = []
                while limit is None or len(held) < limit:
                    message = channel.basic_get(name)
                    if message is None:
                        break
                    held.append(message)
                return act(link, channel, held)
            finally:
                channel.close()

        return self._run("dead letters", call)

    def dead_letters(self, queue: str, *, limit: int | None = None) -> list[DeadLetter]:
        def letters(link: _Link, channel: Any, held: list[Any]) -> list[DeadLetter]:
            out = []
            for message in held:
                headers = _headers(message)
                out.append(
                    DeadLetter(
                        _text(message.properties.get("message_id", "")),
                        queue,
                        bytes(message.body),
                        int(headers.get(_ATTEMPTS, 0)),
                        _text(headers.get(_ERROR, "")),
                        float(headers.get(_FAILED_AT, 0.0)),
                    )
                )
            return out

        return self._browse(queue, limit, letters)

    def _chosen(self, held: list[Any], ids: Iterable[str] | None) -> list[Any]:
        wanted = None if ids is None else set(ids)
        return [
            m for m in held if wanted is None or _text(m.properties.get("message_id", "")) in wanted
        ]

    def requeue_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        def requeue(link: _Link, channel: Any, held: list[Any]) -> int:
            chosen = self._chosen(held, ids)
            name = self._queue(link, queue)
            link.publish_confirmed(
                [
                    (name, self._job_message(_text(m.properties["message_id"]), bytes(m.body), 0))
                    for m in chosen
                ]
            )
            for message in chosen:
                channel.basic_ack(message.delivery_info["delivery_tag"])
            return len(chosen)

        return self._browse(queue, None, requeue)

    def purge_dead_letters(self, queue: str, ids: Iterable[str] | None = None) -> int:
        def purge(link: _Link, channel: Any, held: list[Any]) -> int:
            chosen = self._chosen(held, ids)
            for message in chosen:
                channel.basic_ack(message.delivery_info["delivery_tag"])
            return len(chosen)

        return self._browse(queue, None, purge)

    def queue_length(self, queue: str) -> int:
        """Ready and delayed jobs, and those this process holds; RabbitMQ (AMQP 0-9-1)
        does not report jobs another process has reserved."""

        def call(link: _Link) -> int:
            names = [self._queue(link, queue)]
            names += [self._delay_queue(link, queue, bucket) for bucket in DELAY_BUCKETS]
            total = 0
            for name in names:
                total += link.probe_channel().queue_declare(name, passive=True).message_count
            return total

        total = self._run("queue_length", call)
        with self._lock:
            links = list(self._links.values())
        for link in links:
            with link.lock:
                total += sum(1 for lease in link.leases.values() if lease.queue == queue)
                total += len(link.buffers.get(queue, ()))
        return total

    # -- de-duplication: one tiny queue per key, holding one marker that expires ----------------

    def _done_queue(self, link: _Link, key: str) -> str:
        return self._declare(
            link,
            self._name("done.", key),
            {
                "x-queue-type": "classic",
                "x-max-length": 1,
                "x-overflow": "reject-publish",
                "x-expires": DONE_EXPIRES_MS,
            },
        )

    def mark_done(self, key: str, *, ttl: float) -> bool:
        def call(link: _Link) -> bool:
            name = self._done_queue(link, key)
            marker = amqp.Message(b"", delivery_mode=2, expiration=str(max(int(ttl * 1000), 1)))
            try:
                link.publish_confirmed([(name, marker)])
            except BackendError as exc:
                if isinstance(exc, BackendUnavailable):
                    raise
                return False  # the queue is full: the key is already marked
            return True

        return self._run("mark_done", call)

    def is_done(self, key: str) -> bool:
        def call(link: _Link) -> bool:
            try:
                ok = link.probe_channel().queue_declare(self._name("done.", key), passive=True)
            except amqp.exceptions.NotFound:
                link.probe = None
                return False
            return bool(ok.message_count)

        return self._run("is_done", call)
