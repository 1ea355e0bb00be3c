"""The WebSocket endpoint: one connection, any number of authorised stream subscriptions.

Client messages: ``{"action": "subscribe", "stream": NAME, "after": ID?}`` and
``{"action": "unsubscribe", "stream": NAME}``. Server messages:
``subscribed``, ``unsubscribed``, ``event``, ``reset`` and ``error``, each
with ``"type"`` and the canonical ``"stream"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from notify_starlette._shared import SendGuard
from notifycore.errors import UnknownHub
from notifycore.web import Refusal
from notifycore.web.calls import arun

if TYPE_CHECKING:
    from notify_starlette.endpoints import Endpoints
    from notifycore.backends.base import StreamMessage, StreamRead
    from notifycore.fanout import Subscription

__all__ = ["MAX_SUBSCRIPTIONS", "Session"]

#: Streams one connection may follow at once.
MAX_SUBSCRIPTIONS = 64
#: Close codes: 1013 "try again later" for a slow client, 1012 "service restart" at shutdown.
CLOSE_CODES = {"slow": 1013, "shutdown": 1012}
#: Longest client message, and longest stream name in one, in characters.
MAX_MESSAGE_CHARS = 64 * 1024
MAX_STREAM_NAME = 1024
#: The longest message (characters) the loop's shared writer sends itself; a longer
#: one goes to the connection's own task, since some WebSocket implementations wait
#: for the client to read a write that large (uvicorn's ``ws="websockets"``).
SHARED_WRITE_MAX = 16 * 1024


def _is_text(value: str) -> bool:
    """Whether UTF-8 can encode ``value`` (a JSON ``"\\ud800"`` gives a lone surrogate)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def event_message(stream_json: str, message: StreamMessage) -> str:
    """The ``event`` message; the stored event JSON is embedded, not parsed again."""
    data = message.data.decode("utf-8", errors="replace")
    return f'{{"type":"event","stream":{stream_json},"id":{json.dumps(message.id)},"event":{data}}}'


#: Messages most recently encoded, by ``(stream, id(message))``: every session of a
#: stream receives the same message objects from the fan-out, so a thousand clients cost
#: one encoding. The message is kept in the entry (its id cannot be reused meanwhile).
_ENCODED: dict[tuple[str, int], tuple[StreamMessage, str]] = {}
_ENCODED_MAX = 4096


def encoded_event(stream: str, message: StreamMessage) -> str:
    """:func:`event_message`, encoded once for every session receiving this message object."""
    key = (stream, id(message))
    entry = _ENCODED.get(key)
    if entry is not None and entry[0] is message:
        return entry[1]
    text = event_message(json.dumps(stream), message)
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()
    _ENCODED[key] = (message, text)
    return text


def _text_of(message: Any) -> str | None:
    """A client message's text; None when the client has gone."""
    if message["type"] == "websocket.disconnect":
        return None
    text: str | None = message.get("text")
    if text is None:
        text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
    return text


_DONE, _ENDED, _HANDED_OFF = object(), object(), object()

#: The sessions waiting for the shared writer of each event loop (while it runs).
_READY: dict[asyncio.AbstractEventLoop, deque[Session]] = {}
_WRITERS: set[asyncio.Task[None]] = set()
#: Sessions the shared writer serves between two yields to the loop.
_WRITER_TURN = 256


async def _write(loop: asyncio.AbstractEventLoop, ready: deque[Session]) -> None:
    """The loop's shared writer: the woken sessions, one after another, in one task.

    A thousand connections woken by one event cost one task, not a thousand
    (and no burst of short-lived objects fragmenting the heap). A session
    whose write could wait is handed to a task of its own, so a slow client
    never holds up the others.
    """
    served = 0
    try:
        while ready:
            session = ready.popleft()
            session._queued = False
            if session._flusher is None and not session._stopping:
                await session._flush(shared=True)
            served += 1
            if served % _WRITER_TURN == 0:
                await asyncio.sleep(0)  # let the loop take other work (POSTs, client messages)
    finally:
        if _READY.get(loop) is ready:
            del _READY[loop]
        for session in ready:  # only when cancelled (the loop ends): nobody writes them now
            session._queued = False


class Session:
    """One WebSocket connection and its subscriptions.

    The connection's own task reads the client's messages; no task waits
    on a subscription. Each subscription is *watched*
    (:meth:`~notifycore.fanout.Subscription.watch`): when the fan-out hands
    it a batch (or it ends), the session is queued for the loop's shared
    writer (:func:`_write`), which writes what every subscription of the
    connection holds, or hands the session to a task of its own when a
    write could wait. An idle connection is its ASGI task and a few small
    objects: no task, frame, future or timer per subscription. Stopping the session (the client gone or too
    slow, a slow subscription, shutdown) cancels that writer and the
    connection's task, whose cancellation :meth:`run` takes back as its own.
    """

    __slots__ = (
        "_closed",
        "_dirty",
        "_failure",
        "_flusher",
        "_guard",
        "_queued",
        "_rest",
        "_send_lock",
        "_stopping",
        "_task",
        "endpoints",
        "principal",
        "subscriptions",
        "websocket",
    )

    def __init__(self, endpoints: Endpoints, websocket: WebSocket, principal: Any) -> None:
        self.endpoints = endpoints
        self.websocket = websocket
        self.principal = principal
        self.subscriptions: dict[str, Subscription] = {}
        # asyncio's lock: taking a free one does not yield to the loop (anyio's does, twice).
        self._send_lock = asyncio.Lock()
        # One timer per connection bounds every write (not one per write).
        self._guard = SendGuard(
            getattr(websocket, "_receive", None), endpoints.options.send_timeout
        )
        self._closed = False
        self._task: asyncio.Task[Any] | None = None
        # The task writing the subscriptions' batches, while there are some.
        self._flusher: asyncio.Task[None] | None = None
        self._dirty = False  # a subscription has batches (or ended) since the writer looked
        self._queued = False  # waiting for the loop's shared writer
        # What the shared writer left of a batch for the session's own task to send.
        self._rest: tuple[str, Subscription, StreamRead, int] | None = None
        self._stopping = False
        self._failure: BaseException | None = None

    async def run(self) -> None:
        websocket = self.websocket
        await websocket.accept()
        task = self._task = asyncio.current_task()
        assert task is not None
        try:
            while not self._stopping:  # stopped from this task: a send to the client failed
                text = _text_of(await websocket.receive())
                if text is None:
                    self._closed = True
                    break
                await self._handle(text)
                del text  # not kept while the connection idles
        except asyncio.CancelledError:
            # Our own _stop() is taken back; any other cancellation (the server's) goes on.
            if not self._stopping or task.uncancel() > 0:
                raise
        finally:
            self._stopping = True  # no cancelling of this task from now on
            if self._flusher is not None:
                self._flusher.cancel()
            for subscription in self.subscriptions.values():
                subscription.close()
            self.subscriptions.clear()
            self._guard.close()
        if self._failure is not None:
            raise self._failure

    async def _handle(self, text: str) -> None:
        if len(text) > MAX_MESSAGE_CHARS:
            await self._error(
                None, "bad_request", f"messages are {MAX_MESSAGE_CHARS} characters at most"
            )
            return
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
            request = None
        if not isinstance(request, dict):
            await self._error(None, "bad_request", "messages are JSON objects")
            return
        action, name = request.get("action"), request.get("stream")
        if action not in ("subscribe", "unsubscribe"):
            await self._error(None, "bad_request", "action must be subscribe or unsubscribe")
            return
        if not isinstance(name, str) or not name or len(name) > MAX_STREAM_NAME:
            await self._error(
                None, "bad_request", f"stream must be a string of 1 to {MAX_STREAM_NAME} characters"
            )
            return
        if not _is_text(name):
            await self._error(None, "bad_request", "stream must be valid Unicode text")
            return
        try:
            stream = self.endpoints.resolve(name, self.principal)
        except UnknownHub as exc:
            await self._error(name, "not_found", str(exc))
            return
        except PermissionError:
            await self._error(name, "unauthorized", "authentication required")
            return
        if action == "unsubscribe":
            found = self.subscriptions.pop(stream, None)
            if found is not None:
                found.watch(None)
                found.close()
            await self._send({"type": "unsubscribed", "stream": stream})
            return
        after = request.get("after")
        if after is not None and not (isinstance(after, str) and _is_text(after)):
            await self._error(stream, "bad_request", "after must be a string id")
            return
        await self._subscribe(stream, after or None)

    async def _subscribe(self, stream: str, after: str | None) -> None:
        protocol = self.endpoints.protocol
        allowed = await protocol.access.aallows(self.principal, stream, protocol.to_thread)
        if not allowed:
            code = "unauthorized" if self.principal is None else "forbidden"
            await self._error(stream, code, "not allowed to read this stream")
            return
        if stream in self.subscriptions:
            await self._send({"type": "subscribed", "stream": stream})
            return
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self._error(stream, "too_many_subscriptions", f"at most {MAX_SUBSCRIPTIONS}")
            return
        if protocol.state.closing:
            await self._error(stream, "shutting_down", "the server is shutting down")
            return
        try:
            subscription = await arun(protocol.subscribe(stream, after))
        except Refusal as refusal:  # a malformed after, the backend unreachable
            await self._error(stream, refusal.code, refusal.message)
            return
        if self._stopping:  # the connection ended meanwhile: nobody would read it
            subscription.close()
            return
        self.subscriptions[stream] = subscription
        await self._send({"type": "subscribed", "stream": stream})
        # Watched once "subscribed" is written: the events (a replay first) come after it.
        if not self._stopping:
            subscription.watch(self._woken)

    def _woken(self) -> None:
        """A subscription has batches or ended (called in the loop): have them written."""
        self._dirty = True
        if self._flusher is not None or self._queued or self._stopping:
            return  # being written, or about to be
        if self._guard.transport is None:  # no way to tell whether a write would wait
            self._start_flusher()
            return
        loop = asyncio.get_running_loop()
        ready = _READY.get(loop)
        if ready is None:
            ready = _READY[loop] = deque()
            writer = loop.create_task(_write(loop, ready))
            _WRITERS.add(writer)  # kept until done: the loop holds tasks weakly
            writer.add_done_callback(_WRITERS.discard)
        ready.append(self)
        self._queued = True

    def _start_flusher(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._flush(shared=False))

    def _writable(self) -> bool:
        """Whether a write now goes out at once (the shared writer must never wait on one)."""
        transport = self._guard.transport
        return (
            transport is not None
            and not self._send_lock.locked()
            and not transport.get_write_buffer_size()
        )

    async def _flush(self, *, shared: bool) -> None:
        """Write what every subscription holds until none holds any more.

        ``shared``: by the loop's shared writer, which hands the rest to a
        task of this session's own as soon as a write could wait (the client
        reads slowly) or the connection is to be closed.
        """
        try:
            rest, self._rest = self._rest, None
            if rest is not None and not await self._send_batch(*rest, shared=False):
                return  # the session ended
            while self._dirty and not self._stopping:
                self._dirty = False
                for stream, subscription in list(self.subscriptions.items()):
                    status = await self._forward(stream, subscription, shared)
                    if status is _ENDED:
                        return
                    if status is _HANDED_OFF:
                        self._dirty = True
                        self._start_flusher()
                        return
        except Exception as error:  # ends the connection: run() raises it
            if self._failure is None:
                self._failure = error
            self._stop()
        finally:
            if not shared:
                self._flusher = None

    async def _forward(self, stream: str, subscription: Subscription, shared: bool) -> object:
        """Send one subscription's batches: _DONE, _ENDED (the session ends) or _HANDED_OFF."""
        while True:
            if self.subscriptions.get(stream) is not subscription:
                return _DONE  # unsubscribed (or subscribed anew) while this writer waited
            if shared and not self._writable():
                return _HANDED_OFF
            batch = subscription.take()
            if batch is None:
                break
            if not await self._send_batch(stream, subscription, batch, 0, shared=shared):
                return _HANDED_OFF if self._rest is not None else _ENDED
        reason = subscription.closed_reason
        if reason in CLOSE_CODES and self.subscriptions.get(stream) is subscription:
            if shared:
                return _HANDED_OFF
            protocol = self.endpoints.protocol
            await protocol.arun(protocol.report_disconnect(reason, "websocket"))
            await self._close(CLOSE_CODES[reason], reason)
            return _ENDED
        return _DONE

    async def _send_batch(
        self,
        stream: str,
        subscription: Subscription,
        batch: StreamRead,
        start: int,
        *,
        shared: bool,
    ) -> bool:
        """Send ``batch`` from its message ``start`` on; False if not all of it was sent.

        The shared writer stops where a write could wait, keeping the rest in ``_rest``:
        before a message when the socket's buffer holds unsent data, and before a message
        larger than :data:`SHARED_WRITE_MAX` (an implementation may wait for the client to
        read one that large). Nothing more is sent once the stream is unsubscribed.
        """
        if start == 0 and batch.reset:
            await self._send_text(json.dumps({"type": "reset", "stream": stream}))
        messages = batch.messages
        for index in range(start, len(messages)):
            if self._stopping:
                return False
            if self.subscriptions.get(stream) is not subscription:
                return True  # unsubscribed meanwhile: nothing more is owed
            text = encoded_event(stream, messages[index])
            if shared and (
                (index > start and not self._writable()) or len(text) > SHARED_WRITE_MAX
            ):
                self._rest = (stream, subscription, batch, index)
                return False
            await self._send_text(text)
        return not self._stopping

    async def _error(self, stream: str | None, code: str, message: str) -> None:
        await self._send({"type": "error", "stream": stream, "error": code, "message": message})

    async def _send(self, payload: dict[str, Any]) -> None:
        await self._send_text(json.dumps(payload))

    async def _send_text(self, text: str) -> None:
        """Send, or end the connection when the client is gone or takes too long to read."""
        if self._closed:
            return
        guard = self._guard
        try:
            async with self._send_lock:
                await guard.send(self.websocket.send_text, text)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            self._closed = True
            self._stop()
            return
        if guard.timed_out:
            self._closed = True
            self._stop()

    async def _close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.endpoints.options.send_timeout), self._send_lock:
                    # Already gone: nothing more to tell it.
                    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                        await self.websocket.close(code, reason)
        self._stop()

    def _stop(self) -> None:
        """End the session: its writer, and the connection's task reading the client."""
        if self._stopping:
            return
        self._stopping = True
        current = asyncio.current_task()
        if self._flusher is not None and self._flusher is not current:
            self._flusher.cancel()
        if self._task is not None and self._task is not current:
            self._task.cancel()
