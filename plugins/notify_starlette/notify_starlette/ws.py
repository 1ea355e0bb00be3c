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
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect

from notify_starlette._shared import SendGuard
from notifycore.errors import UnknownHub
from notifycore.web import Refusal
from notifycore.web.calls import arun

if TYPE_CHECKING:
    from notify_starlette.endpoints import Endpoints
    from notifycore.backends.base import StreamMessage
    from notifycore.fanout import Subscription

__all__ = ["MAX_SUBSCRIPTIONS", "Session"]

#: Streams one connection may follow at once.
MAX_SUBSCRIPTIONS = 64
#: Close codes: 1013 "try again later" for a slow client, 1012 "service restart" at shutdown.
CLOSE_CODES = {"slow": 1013, "shutdown": 1012}
_WAKE_SECONDS = 30.0
#: Longest client message, and longest stream name in one, in characters.
MAX_MESSAGE_CHARS = 64 * 1024
MAX_STREAM_NAME = 1024


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


#: Messages most recently encoded, by ``(stream JSON, id(message))``: every session of a
#: stream receives the same message objects from the fan-out, so a thousand clients cost
#: one encoding. The message is kept in the entry (its id cannot be reused meanwhile).
_ENCODED: dict[tuple[str, int], tuple[StreamMessage, str]] = {}
_ENCODED_MAX = 4096


def encoded_event(stream_json: str, message: StreamMessage) -> str:
    """:func:`event_message`, encoded once for every session receiving this message object."""
    key = (stream_json, id(message))
    entry = _ENCODED.get(key)
    if entry is not None and entry[0] is message:
        return entry[1]
    text = event_message(stream_json, message)
    if len(_ENCODED) >= _ENCODED_MAX:
        _ENCODED.clear()
    _ENCODED[key] = (message, text)
    return text


class Session:
    """One WebSocket connection and its subscriptions."""

    def __init__(self, endpoints: Endpoints, websocket: WebSocket, principal: Any) -> None:
        self.endpoints = endpoints
        self.websocket = websocket
        self.principal = principal
        self.subscriptions: dict[str, tuple[Subscription, anyio.CancelScope]] = {}
        # asyncio's lock: taking a free one does not yield to the loop (anyio's does, twice).
        self._send_lock = asyncio.Lock()
        # One timer per connection bounds every write (not one per write).
        self._guard = SendGuard(
            getattr(websocket, "_receive", None), endpoints.options.send_timeout
        )
        self._closed = False
        self._tasks: TaskGroup | None = None

    async def run(self) -> None:
        await self.websocket.accept()
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                await self._receive()
                tasks.cancel_scope.cancel()
        finally:
            for subscription, _ in self.subscriptions.values():
                subscription.close()
            self.subscriptions.clear()
            self._guard.close()

    async def _receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self._closed = True
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", errors="replace")
            await self._handle(text)

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
                found[1].cancel()
                found[0].close()
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
            subscription = await arun(protocol.subscribe(stream, after), protocol.to_thread)
        except Refusal as refusal:  # a malformed after, the backend unreachable
            await self._error(stream, refusal.code, refusal.message)
            return
        scope = anyio.CancelScope()
        self.subscriptions[stream] = (subscription, scope)
        await self._send({"type": "subscribed", "stream": stream})
        assert self._tasks is not None
        self._tasks.start_soon(self._pump, stream, subscription, scope)

    async def _pump(
        self, stream: str, subscription: Subscription, scope: anyio.CancelScope
    ) -> None:
        """Forward one subscription's batches until it is unsubscribed or ended."""
        stream_json = json.dumps(stream)
        with scope:
            while True:
                batch = await subscription.aget(_WAKE_SECONDS)
                if subscription.closed:
                    reason = subscription.closed_reason or "closed"
                    if reason in CLOSE_CODES:
                        protocol = self.endpoints.protocol
                        await protocol.arun(protocol.report_disconnect(reason, "websocket"))
                        await self._close(CLOSE_CODES[reason], reason)
                    return
                if batch is None:
                    continue
                if batch.reset:
                    await self._send_text(json.dumps({"type": "reset", "stream": stream}))
                for message in batch.messages:
                    await self._send_text(encoded_event(stream_json, message))

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
            with anyio.move_on_after(self.endpoints.options.send_timeout):
                async with self._send_lock:
                    # Already gone: nothing more to tell it.
                    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                        await self.websocket.close(code, reason)
        self._stop()

    def _stop(self) -> None:
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()
