"""The connection layer: one AMQP connection per thread, its channels, heartbeats and leases.

A :class:`Link` is one thread's connection (AMQP channels are not thread-safe)
with the channels it uses, its publisher confirms, the stream *tails* it keeps
on streams it publishes to, and its **QoS and lease bookkeeping**: the jobs it
holds (their visibility timeouts) and those a consumer delivered ahead
(prefetch). The **keeper thread** tends every link its thread is not using:
it reads what RabbitMQ sent, sends heartbeats, acks what tails saw and gives
back reservations past their visibility timeout. :class:`AmqpConnections`
runs a call on the caller's link, reconnecting after connection errors and
waiting out a node that is still recovering a queue. Cluster failover lists
(issue 16) are handled where connections are made, here.
"""

from __future__ import annotations

import errno
import logging
import re
import select
import socket
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast

import amqp
import amqp.exceptions
import amqp.spec
import amqp.transport
from kombu import connection as kombu_connection
from kombu import exceptions as kombu_exceptions

from notifycore.errors import BackendError, BackendUnavailable, ConfigurationError

__all__ = [
    "CONNECTION_ERRORS",
    "PUBLISH_TIMEOUT",
    "AmqpConnections",
    "Blocked",
    "Lease",
    "Link",
    "Nacked",
    "Tail",
    "body",
    "closed_by_broker",
    "headers",
    "read_frame",
    "recovering",
    "refusal",
    "safe_url",
    "send",
    "text",
]

#: kombu's Connection (kombu is not typed throughout; its objects are ``Any`` here).
KombuConnection: Any = kombu_connection.Connection

logger = logging.getLogger("notify_amqp")
T = TypeVar("T")

#: How long a publisher waits for confirms, or for its messages to come back from a stream.
PUBLISH_TIMEOUT = 30.0
#: Exceptions that mean the connection is gone (a new one may work).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    amqp.exceptions.ConnectionError,
    amqp.exceptions.RecoverableConnectionError,
    OSError,
    EOFError,
)

_CREDENTIALS = re.compile(r"(://[^:/@;]*:)[^;]*@")


def safe_url(url: str) -> str:
    """The URL(s) without passwords, for messages and logs (kombu's ``a;b`` failover lists
    too; a password may hold any character but ``;``)."""
    return ";".join(_CREDENTIALS.sub(r"\1***@", part) for part in url.split(";"))


def headers(message: Any) -> dict[str, Any]:
    return dict(message.properties.get("application_headers") or {})


def body(message: Any) -> bytes:
    """A message's body as bytes: py-amqp leaves an empty body as ``""``, a str."""
    data = message.body
    return data.encode() if isinstance(data, str) else bytes(data)


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def recovering(exc: BaseException) -> bool:
    """RabbitMQ's answer about a durable queue or stream that its node has not brought back
    yet, after a restart: 404 "home node ... is down or inaccessible"; or, in a cluster whose
    node stopped, about a stream whose copy on the node we reached is not running yet: 406
    "does not have a replica on the local node". It passes."""
    if isinstance(exc, amqp.exceptions.NotFound):
        return "down or inaccessible" in str(exc)
    return isinstance(exc, amqp.exceptions.PreconditionFailed) and "replica on the local" in str(
        exc
    )


def refusal(exc: BaseException) -> BaseException | None:
    """RabbitMQ's refusal of who we are, if ``exc`` is (or wraps) one: the login (403
    ACCESS_REFUSED: a wrong user name or password), the virtual host (530 NOT_ALLOWED at
    Connection.open), or a permission (403 on a declaration). Trying again cannot help."""
    seen: BaseException | None = exc
    for _ in range(4):  # kombu may wrap py-amqp's error in its own
        if seen is None:
            return None
        if isinstance(seen, amqp.exceptions.AccessRefused) or (
            isinstance(seen, amqp.exceptions.NotAllowed)
            and getattr(seen, "method_sig", None) == (10, 40)  # Connection.open
        ):
            return cast(BaseException, seen)
        seen = seen.__cause__ or seen.__context__
    return None


#: basic.ack, basic.reject and basic.nack wait for no answer: RabbitMQ's refusal of one
#: arrives later, as the close of its channel.
_UNANSWERED = {(0, 0), (60, 80), (60, 90), (60, 120)}


def closed_by_broker(exc: BaseException) -> bool:
    """A channel RabbitMQ closed on its own (a consumer timeout: method 0, 0) or over an ack
    it no longer took. py-amqp opens such a channel again, but without its consumers and
    unacked deliveries, so the connection's state is no longer what notifycore holds."""
    return (
        isinstance(exc, amqp.exceptions.ChannelError)
        and getattr(exc, "method_sig", None) in _UNANSWERED
    )


@dataclass(slots=True)
class Lease:
    channel: Any
    tag: int
    deadline: float
    queue: str
    generation: int
    #: The job held, as a listing of the queue shows it.
    job: Any = None


@dataclass(slots=True)
class Tail:
    """A consumer on a stream this connection publishes to: it reports our offsets."""

    channel: Any
    waiting: dict[str, int | None] = field(default_factory=dict)
    unacked: int = 0
    last_tag: int = 0
    #: Deliveries so far: a publisher waiting on a tail that says nothing replaces it.
    seen: int = 0

    def ack(self) -> None:
        """Ack what came so far: RabbitMQ's consumer timeout also applies to stream deliveries."""
        if self.unacked:
            self.channel.basic_ack(self.last_tag, multiple=True)
            self.unacked = 0


class Nacked(BackendUnavailable):
    """RabbitMQ nacked a confirmed publish: a quorum queue without a leader for the moment
    (its node stopped, a new one is being elected) says so. Published again, it goes in."""


class Blocked(BackendUnavailable):
    """RabbitMQ blocks publishers (``connection.blocked``: a memory or disk alarm), so a
    publish is refused at once, or failed as soon as the notice came; the message says which,
    and whether the message may still be stored. Not retried within the call: the block
    lasts until the alarm clears."""


class _Block:
    """``connection.blocked`` / ``connection.unblocked`` of one connection: the broker's
    reason while it blocks the connection, else None. py-amqp's own ``on_blocked`` callback
    is handed a fixed text instead of the reason (5.x declares the method without its one
    argument), so the connection is told to read the argument (:func:`watch_blocks`)."""

    __slots__ = ("reason",)

    def __init__(self) -> None:
        self.reason: str | None = None

    def on_blocked(self, reason: Any = "") -> None:
        self.reason = text(reason) or "a resource alarm"
        logger.warning("RabbitMQ blocks a publishing connection: %s", self.reason)

    def on_unblocked(self) -> None:
        if self.reason is not None:
            logger.warning("RabbitMQ no longer blocks a publishing connection")
        self.reason = None


_CONNECTION_BLOCKED = amqp.spec.Connection.Blocked
_CONNECTION_UNBLOCKED = amqp.spec.Connection.Unblocked


def watch_blocks(connection: amqp.Connection) -> _Block:
    """Note ``connection``'s block notices in a :class:`_Block` (``notify_block``). The
    notices come only to a connection that published while an alarm is on (RabbitMQ then
    stops reading from it), and are read with the rest of what the connection receives.
    py-amqp negotiates the ``connection.blocked`` capability by default."""
    block = _Block()
    methods = cast(dict[Any, Any], connection._METHODS)
    connection._METHODS = {  # this instance's table, with the reason
        **methods,
        _CONNECTION_BLOCKED: amqp.spec.method(_CONNECTION_BLOCKED, "s"),
    }
    connection._callbacks[_CONNECTION_BLOCKED] = block.on_blocked
    connection._callbacks[_CONNECTION_UNBLOCKED] = block.on_unblocked
    connection.notify_block = block
    return block


def block_of(conn: Any) -> _Block | None:
    """The :class:`_Block` of a kombu connection's py-amqp connection, if it has one."""
    connection = getattr(conn, "_connection", None)
    return getattr(connection, "notify_block", None)


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


class Link:
    """One AMQP connection, used by one thread at a time (``lock``); jobs remember theirs.

    A link lives as long as its thread: when the thread ends, the link is collected and
    its connection closed, so jobs it held go back to RabbitMQ.
    """

    def __init__(self, backend: AmqpConnections, number: int) -> None:
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
        self.leases: dict[str, Lease] = {}
        #: Jobs a consumer delivered that no reserve took yet, with when they came.
        self.buffers: dict[str, deque[tuple[float, Any]]] = {}
        self.consumers: dict[str, str] = {}
        self.tails: dict[str, Tail] = {}
        self.hold = 30.0  # how long a buffered job may wait: the last visibility timeout
        #: The connection's block notices (:func:`watch_blocks`).
        self.block: _Block | None = None
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
                self.block = block_of(self.conn)
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
        block, self.block = self.block, None
        self.channel = self.confirming = self.probe = self.jobs = None
        self.generation += 1
        self.leases.clear()
        self.buffers.clear()
        self.consumers.clear()
        self.tails.clear()
        if block is not None and block.reason is not None:
            _drop(conn)  # blocked: RabbitMQ would not answer a close
        else:
            _release([conn])

    def park(self) -> None:
        """Give a connection RabbitMQ blocks to the backend, which keeps it until RabbitMQ
        unblocks it (closing it now would wait for an answer RabbitMQ does not send while it
        blocks the connection; what it holds goes back to RabbitMQ when it closes). The
        thread goes on on a new connection: it can read while publishers are blocked."""
        conn, block = self.conn, self.block
        self.conn = None
        self.reset()
        if conn is not None:
            self.backend._park(conn, block)

    def close_channel(self, channel: Any) -> None:
        """Close ``channel`` of this link's connection, unless the link let go of that
        connection meanwhile (:meth:`park`): RabbitMQ would not answer the close while it
        blocks the connection, and the connection goes with what its channels hold."""
        if self.conn is not None and channel.is_open:
            channel.close()

    def refuse_if_blocked(self) -> None:
        """Before publishing: raise :class:`Blocked` (nothing sent) while RabbitMQ blocks
        one of the backend's connections, that is, while its alarm is known to be on."""
        reason = self.backend._blocked_reason()
        if reason is not None:
            raise self._blocked(
                reason,
                "nothing was sent, so the message is not stored: publish it again once the "
                "alarm clears",
            )

    def fail_if_blocked(self) -> None:
        """While waiting for what was published: raise :class:`Blocked` once RabbitMQ said it
        blocks this connection (the message went before the notice: RabbitMQ may store it
        when the alarm clears), after parking the connection (:meth:`park`)."""
        block = self.block
        if block is not None and block.reason is not None:
            reason = block.reason
            self.park()
            raise self._blocked(
                reason,
                "the message was sent before the block was known and may still be stored "
                "when the alarm clears (published again, it may be stored twice)",
            )

    def _blocked(self, reason: str, outcome: str) -> Blocked:
        return Blocked(
            f"RabbitMQ is blocking publishers: {reason} (at {self.backend.safe_url}); {outcome}"
        )

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
        return read_frame(self.connect(), timeout, self.backend.beat)

    def tend(self, now: float) -> None:
        """What the link's thread does while it waits, done while it is busy elsewhere (in a
        consumer): read what RabbitMQ sent (its heartbeats, deliveries to our consumers),
        send a heartbeat when one is due, ack what the tails saw, and give back reservations
        past their visibility timeout."""
        if self.conn is None or not self.conn.connected:
            return
        connection = self.conn.connection
        for _ in range(64):  # what has arrived; the rest waits for the next round
            if not read_frame(connection, 0.0, self.backend.beat):
                break
        for tail in self.tails.values():
            tail.ack()
        self.sweep(now)

    # -- confirmed publishing -----------------------------------------------------------------

    def publish_confirmed(self, items: list[tuple[str, amqp.Message]]) -> None:
        self.connect()
        self.refuse_if_blocked()
        counts = self.counts
        nacked, returned = counts.nacked, counts.returned
        for routing_key, message in items:
            send(self.confirming, routing_key, message)
            self.confirm_seq += 1
        deadline = time.monotonic() + PUBLISH_TIMEOUT
        while counts.confirmed < self.confirm_seq:
            if time.monotonic() > deadline:
                raise BackendUnavailable("RabbitMQ did not confirm a publish in time")
            self.drain(deadline - time.monotonic())
            if counts.confirmed < self.confirm_seq:
                self.fail_if_blocked()
        if counts.returned != returned:
            raise amqp.exceptions.NotFound("a queue notifycore declared is gone")
        if counts.nacked != nacked:
            raise Nacked("RabbitMQ refused (nacked) a published message")

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


def send(channel: Any, routing_key: str, message: amqp.Message) -> None:
    """Publish ``message`` to the queue ``routing_key`` (mandatory: RabbitMQ returns what it
    cannot route), without waiting for anything. py-amqp's ``basic_publish`` first drains
    the connection without waiting (two socket mode switches and a read that fails), for a
    ``connection.blocked`` notice; our callers read the connection right after publishing,
    which takes that notice as well."""
    if not channel.connection:
        raise amqp.exceptions.RecoverableConnectionError("basic_publish: connection closed")
    channel.send_method(_BASIC_PUBLISH, "Bssbb", (0, "", routing_key, True, False), message)


_BASIC_PUBLISH = amqp.spec.Basic.Publish


def read_frame(connection: amqp.Connection, timeout: float, beat: float) -> bool:
    """Read one method from ``connection`` within ``timeout`` seconds (False if none came),
    sending heartbeats when due at least every ``beat`` seconds. (py-amqp's
    ``drain_events`` starts its timeout again after each heartbeat frame the server sends,
    so with short heartbeats it would never time out.)"""
    reader: _Reader | None = getattr(connection._transport, "notify_reader", None)
    if reader is not None:
        return reader.read(connection, timeout, beat)
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


_FRAME_HEADER = struct.Struct(">BHI")
_FRAME_END = 206


class _Reader:
    """:func:`read_frame` for a connection that reads ahead (:func:`read_ahead`): whole frames
    are taken from the transport's buffer without a system call; when none is there, one
    ``poll`` waits for the socket and one non-blocking ``recv`` takes what came. The socket
    stays in blocking mode throughout (py-amqp's ``blocking_read`` switches it to a timeout
    and back, two more system calls for every frame), and heartbeats are looked after once
    every ``beat`` seconds instead of at every frame."""

    __slots__ = ("next_tick", "poller", "sock", "transport")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.sock = transport.sock
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        self.next_tick = 0.0

    def read(self, connection: amqp.Connection, timeout: float, beat: float) -> bool:
        transport = self.transport
        on_frame = connection.on_inbound_frame
        now = time.monotonic()
        if now >= self.next_tick:  # also while frames keep coming: a follower sends little
            connection.heartbeat_tick()  # raises ConnectionForced when the server went silent
            self.next_tick = now + beat
        deadline = now + max(timeout, 0.0)
        while True:
            rbuf = transport._read_buffer
            if len(rbuf) >= 8:
                kind, channel, size = _FRAME_HEADER.unpack_from(rbuf, 0)
                end = size + 7
                if len(rbuf) > end:
                    if rbuf[end] != _FRAME_END:
                        raise amqp.exceptions.UnexpectedFrame(
                            f"Received frame_end {rbuf[end]:#04x} while expecting 0xce"
                        )
                    if type(rbuf) is not bytearray:  # py-amqp puts a partial frame back as bytes
                        rbuf = transport._read_buffer = bytearray(rbuf)
                    payload = bytes(rbuf[7:end])
                    del rbuf[: end + 1]
                    if on_frame((kind, channel, payload)):
                        return True
                    continue  # a heartbeat, or one frame of a message: read on
            now = time.monotonic()
            if now >= self.next_tick:
                connection.heartbeat_tick()
                self.next_tick = now + beat
            wait = max(min(deadline, self.next_tick) - now, 0.0)
            if transport.sock is not self.sock:
                raise OSError("the connection was closed")
            if self.poller.poll(wait * 1000.0) and self._fill():
                continue
            if time.monotonic() >= deadline:
                return False

    def _fill(self) -> bool:
        """Take what the socket holds into the buffer, without waiting; False if nothing."""
        transport = self.transport
        try:
            got = self.sock.recv(READ_AHEAD, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            transport.connected = False
            raise
        if not got:
            transport.connected = False
            raise OSError("Server unexpectedly closed connection")
        rbuf = transport._read_buffer
        if type(rbuf) is not bytearray:
            rbuf = transport._read_buffer = bytearray(rbuf)
        rbuf += got
        return True


#: How much one read from a connection's socket may take: a delivery's three frames (and
#: more) in one system call instead of three per frame.
READ_AHEAD = 65536


def read_ahead(transport: Any) -> None:
    """Make py-amqp's TCP transport read ahead into its buffer instead of asking the socket
    for each frame's header, payload and end byte in turn (nine calls for one delivery, each
    with a poll while a timeout is set). Frames are parsed as before, from the buffer, which
    is a bytearray here: what was read is cut from its front without copying the rest.
    (TLS connections keep py-amqp's own reads.)"""
    if not isinstance(transport, amqp.transport.TCPTransport) or transport.sock is None:
        return
    recv = transport.sock.recv
    retry = (errno.EAGAIN, errno.EINTR)

    def read(n: int, initial: bool = False) -> bytes:
        rbuf = transport._read_buffer
        if type(rbuf) is not bytearray:  # py-amqp puts a partial frame back as bytes
            rbuf = bytearray(rbuf)
        try:
            while len(rbuf) < n:
                try:
                    got = recv(READ_AHEAD)
                except OSError as exc:
                    if exc.errno in retry:
                        if initial and transport.raise_on_initial_eintr:
                            raise TimeoutError() from exc
                        continue
                    raise
                if not got:
                    raise OSError("Server unexpectedly closed connection")
                rbuf += got
        except BaseException:
            transport._read_buffer = rbuf  # kept: read_frame puts a partial frame back first
            raise
        result = bytes(rbuf[:n])
        del rbuf[:n]
        transport._read_buffer = rbuf
        return result

    transport._read = read
    transport.notify_reader = _Reader(transport)


def _keep(ref: weakref.ref[AmqpConnections], stop: threading.Event) -> None:
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


def _drop(conn: Any) -> None:
    """Close a connection without the closing handshake: one RabbitMQ blocks does not answer."""
    if conn is None:
        return
    try:
        conn.collect()
    except Exception as exc:
        logger.debug("dropping a RabbitMQ connection failed: %s", exc)


class AmqpConnections:
    """Connections of :class:`~notify_amqp.backend.AmqpBackend`: one link per thread, the keeper
    thread, and :meth:`_run`, through which every call reaches RabbitMQ."""

    connection_errors: ClassVar[tuple[type[BaseException], ...]] = CONNECTION_ERRORS
    _url: str
    safe_url: str
    retries: int
    heartbeat: int
    recovery_wait: float
    #: How often heartbeats are looked after (py-amqp wants a tick about every second).
    beat: float
    _lock: threading.Lock
    _links: weakref.WeakValueDictionary[int, Link]
    _local: threading.local
    _numbers: Any
    _declared: set[str]
    _checked: bool
    _closed: bool
    _keeper: threading.Thread | None
    _stop: threading.Event
    #: Connections RabbitMQ blocks, kept until it unblocks them (:meth:`Link.park`).
    _parked: list[tuple[Any, _Block]]

    def _init_connections(
        self, url: str, *, retries: int, heartbeat: int, recovery_wait: float
    ) -> None:
        self._url = url
        self.safe_url = safe_url(url)
        if not url.startswith(("amqp://", "amqps://", "pyamqp://")):
            raise ConfigurationError(f"AMQP_URL must be an amqp:// URL, not {self.safe_url!r}")
        self.retries = retries
        self.heartbeat = heartbeat
        self.recovery_wait = recovery_wait
        self.beat = min(max(heartbeat / 4, 0.05), 1.0) if heartbeat else 1.0
        self._lock = threading.Lock()
        # Weak: a link belongs to its thread (``_local``) and goes when the thread ends.
        self._links = weakref.WeakValueDictionary()
        self._local = threading.local()
        self._numbers = iter(range(1, 1 << 62))
        self._declared = set()
        self._checked = False
        self._closed = False
        self._keeper = None
        self._stop = threading.Event()
        self._parked = []

    def _close_links(self) -> None:
        self._closed = True
        self._stop.set()
        with self._lock:
            links = list(self._links.values())
            self._links.clear()
        for link in links:
            with link.lock:
                link.reset()
        with self._lock:
            parked, self._parked = self._parked, []
        for conn, _ in parked:
            _drop(conn)

    def _park(self, conn: Any, block: _Block | None) -> None:
        if block is None or self._closed:
            _drop(conn)
            return
        with self._lock:
            self._parked.append((conn, block))

    def _blocked_reason(self) -> str | None:
        """RabbitMQ's reason while it blocks one of this backend's connections, else None."""
        if not self._parked:  # the common case, without the lock
            return None
        with self._lock:
            for _, block in self._parked:
                if block.reason is not None:
                    return block.reason
        return None

    def _tend_parked(self) -> None:
        """Read the parked connections (their ``connection.unblocked``); close those RabbitMQ
        unblocked, and drop those that broke."""
        with self._lock:
            parked = list(self._parked)
        for conn, block in parked:
            broken = False
            try:
                for _ in range(64):
                    if not read_frame(conn._connection, 0.0, self.beat):
                        break
            except Exception as exc:  # its block ends with it: a new connection learns again
                logger.debug("a blocked RabbitMQ connection broke: %s", exc)
                broken = True
            if broken or block.reason is None:
                with self._lock:
                    if (conn, block) in self._parked:
                        self._parked.remove((conn, block))
                if broken:
                    _drop(conn)
                else:
                    _release([conn])  # RabbitMQ reads it again: a clean close

    def _connect(self) -> Any:
        """A new connection (kombu retries the connect); checks the server once."""
        conn = KombuConnection(self._url, connect_timeout=2.0, heartbeat=self.heartbeat)
        try:
            conn.ensure_connection(
                max_retries=self.retries, interval_start=0.05, interval_step=0.25
            )
        except Exception as exc:
            conn.release()
            refused = refusal(exc)
            if refused is not None:
                raise self._access_refused(refused) from exc
            if not isinstance(exc, (kombu_exceptions.OperationalError, *conn.connection_errors)):
                raise
            raise BackendUnavailable(
                f"RabbitMQ at {self.safe_url} is unavailable (after {self.retries} retries): {exc}"
            ) from exc
        read_ahead(conn.connection.transport)
        watch_blocks(conn.connection)
        if not self._checked:
            self._check_server(conn)
        return conn

    def _access_refused(self, exc: BaseException) -> ConfigurationError:
        """A refusal (:func:`refusal`) as the configuration error it is: not an outage, so
        not retried; a worker stops on it. RabbitMQ's reason never holds the password."""
        reason = str(getattr(exc, "reply_text", "") or exc)
        if isinstance(exc, amqp.exceptions.NotAllowed):
            what = "the virtual host in AMQP_URL"
        elif getattr(exc, "method_sig", None) in (None, (0, 0), (10, 11)):  # the login
            what = "the user name or password in AMQP_URL"
        else:
            what = "what AMQP_URL's user may do (its permissions)"
        return ConfigurationError(
            f"RabbitMQ at {self.safe_url} refused {what}: {reason} (a configuration error: "
            "fix AMQP_URL or the user's rights; notifycore does not retry it)"
        )

    def _check_server(self, conn: Any) -> None:
        """Refuse a server without stream queues at once, instead of losing history later."""
        version = text(conn.connection.server_properties.get("version", ""))
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if len(numbers) == 2 and numbers < (3, 9):
            conn.release()
            raise ConfigurationError(
                f"RabbitMQ {version} at {self.safe_url} has no stream queues (3.9 or newer is "
                "needed): notifycore keeps event history in streams and will not run without them"
            )
        self._checked = True

    def _link(self) -> Link:
        link: Link | None = getattr(self._local, "link", None)
        if link is None or link.number not in self._links:
            if self._closed:
                raise BackendError("this AmqpBackend is closed")
            link = Link(self, next(self._numbers))
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
        if self._parked:
            self._tend_parked()
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

    def _run(self, what: str, call: Callable[[Link], T], link: Link | None = None) -> T:
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
                    if link.block is not None and link.block.reason is not None:
                        link.park()  # blocked since its last call: RabbitMQ reads it no more
                    link.connect()
                    return call(link)
                except Nacked as exc:
                    # A channel whose queue's leader moved can go on nacking: start afresh.
                    link.reset()
                    failures += 1
                    if failures > self.retries:
                        raise BackendUnavailable(
                            f"RabbitMQ at {self.safe_url} is unavailable ({what}, after "
                            f"{self.retries} retries): {exc}"
                        ) from exc
                except amqp.exceptions.NotFound as exc:
                    link.repair()
                    with self._lock:
                        self._declared.clear()
                    if recovering(exc):
                        recovering_since = self._still_recovering(what, exc, recovering_since)
                    else:
                        # A queue or stream was deleted behind our back: declare again at once.
                        failures += 1
                        if failures > self.retries:
                            raise BackendError(
                                f"RabbitMQ at {self.safe_url}: {what}: {exc}"
                            ) from exc
                        continue
                except (*self.connection_errors, amqp.exceptions.ChannelError) as exc:
                    if recovering(exc):  # a stream's copy on this node is not running yet
                        link.repair()
                        recovering_since = self._still_recovering(what, exc, recovering_since)
                    else:
                        refused = refusal(exc)
                        if refused is not None:
                            link.repair()
                            raise self._access_refused(refused) from exc
                        if not isinstance(exc, self.connection_errors) and not closed_by_broker(
                            exc
                        ):
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

    def _still_recovering(self, what: str, exc: BaseException, since: float | None) -> float:
        """When RabbitMQ started recovering what ``what`` needs (now, at the first answer);
        BackendUnavailable once that is ``recovery_wait`` seconds ago."""
        now = time.monotonic()
        if since is None:
            logger.debug("RabbitMQ is recovering (%s); waiting", exc)
            return now
        if now - since >= self.recovery_wait:
            raise BackendUnavailable(
                f"RabbitMQ at {self.safe_url} did not recover what {what} needs "
                f"within {self.recovery_wait:g} s: {exc}"
            ) from exc
        return since

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
