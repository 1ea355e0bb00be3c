"""The WebSocket sessions' writers, driven with sockets whose writes the test holds.

Real uvicorn connections are in test_ws.py and test_stuck_clients.py; here a write
must wait exactly when the test says, to reach the orderings in between.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

from notify_starlette.endpoints import Endpoints
from notify_starlette.ws import SHARED_WRITE_MAX, Session
from notifycore import Notifications
from notifycore.testing import await_for
from notifycore.web.protocol import WebOptions, WebProtocol

WAIT = 30.0


class _Transport:
    """What the session's send guard looks at: an empty buffer (writes go out at once)."""

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        pass


class _Socket:
    """A WebSocket whose ``send_text`` waits while ``gate`` is clear (for ``holds(text)``)."""

    def __init__(self, holds: Callable[[str], bool] = lambda text: True) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.holds = holds
        self.waiting = 0
        self.transport = _Transport()
        self._receive = self.receive  # where the send guard finds the transport

    async def accept(self) -> None:
        pass

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send_text(self, text: str) -> None:
        if self.holds(text):
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        pass

    async def ask(self, **message: Any) -> None:
        await self.incoming.put({"type": "websocket.receive", "text": json.dumps(message)})

    def events(self, stream: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == "event" and m.get("stream") == stream]

    def count(self, kind: str) -> int:
        return sum(m.get("type") == kind for m in self.sent)


def _run(scenario: Callable[[Endpoints, Notifications], Coroutine[Any, Any, None]]) -> None:
    notes = Notifications(config={"BACKEND": "memory"}, environ={})
    endpoints = Endpoints(WebProtocol(notes, WebOptions(authorize=lambda principal, s: True)))
    try:
        asyncio.run(scenario(endpoints, notes))
    finally:
        notes.close()


async def _session(endpoints: Endpoints, socket: _Socket) -> tuple[Session, asyncio.Task[None]]:
    session = Session(endpoints, socket, {"id": "x"})  # type: ignore[arg-type]
    return session, asyncio.create_task(session.run())


async def _end(socket: _Socket, task: asyncio.Task[None]) -> None:
    socket.gate.set()
    await socket.incoming.put({"type": "websocket.disconnect"})
    await asyncio.wait_for(task, WAIT)


def test_nothing_of_a_stream_is_sent_after_it_is_unsubscribed() -> None:
    # A client that reads slowly has its own writer, waiting on a write of stream a; the
    # client unsubscribes from b meanwhile: b's queued event must never follow.
    async def scenario(endpoints: Endpoints, notes: Notifications) -> None:
        socket = _Socket()
        session, task = await _session(endpoints, socket)
        await socket.ask(action="subscribe", stream="user:a")
        await socket.ask(action="subscribe", stream="user:b")
        await await_for(lambda: socket.count("subscribed") == 2, WAIT, "both subscribed")
        socket.gate.clear()  # the client stops reading
        backend = notes.fanout.backend
        backend.publish("user:a", b'{"n": 1}')
        await await_for(lambda: socket.waiting == 1, WAIT, "the writer waiting on a's event")
        backend.publish("user:b", b'{"n": 2}')
        b = next(sub for name, sub in session.subscriptions.items() if name.endswith("b"))
        await await_for(lambda: b._pending_messages == 1, WAIT, "b's event queued")
        await socket.ask(action="unsubscribe", stream="user:b")
        await await_for(
            lambda: len(session.subscriptions) == 1, WAIT, "b unsubscribed (its answer waits)"
        )
        socket.gate.set()
        await await_for(lambda: socket.count("unsubscribed") == 1, WAIT, "the unsubscribe answered")
        backend.publish("user:a", b'{"n": 3}')
        await await_for(lambda: len(socket.events("user:a")) == 2, WAIT, "a's events")
        assert socket.events("user:b") == []
        answered = next(i for i, m in enumerate(socket.sent) if m["type"] == "unsubscribed")
        assert all(m.get("stream") != "user:b" for m in socket.sent[answered + 1 :])
        await _end(socket, task)

    _run(scenario)


def test_a_large_message_to_a_slow_client_does_not_hold_up_the_others() -> None:
    # The loop's shared writer never waits on one client: a message larger than
    # SHARED_WRITE_MAX goes to that client's own writer, since some implementations
    # wait for the client to read one that large.
    big = json.dumps({"text": "x" * (SHARED_WRITE_MAX + 100)}).encode()

    async def scenario(endpoints: Endpoints, notes: Notifications) -> None:
        slow = _Socket(holds=lambda text: len(text) > SHARED_WRITE_MAX)
        quick = _Socket(holds=lambda text: False)
        tasks = [(await _session(endpoints, socket))[1] for socket in (slow, quick)]
        for socket in (slow, quick):  # the slow one first: the shared writer meets it first
            await socket.ask(action="subscribe", stream="user:s")
            await await_for(lambda s=socket: s.count("subscribed") == 1, WAIT, "subscribed")  # type: ignore[misc]
        slow.gate.clear()
        notes.fanout.backend.publish("user:s", big)
        await await_for(lambda: len(quick.events("user:s")) == 1, WAIT, "the quick client's event")
        assert slow.waiting == 1 and slow.events("user:s") == []
        slow.gate.set()
        await await_for(lambda: len(slow.events("user:s")) == 1, WAIT, "the slow client's event")
        for socket, task in zip((slow, quick), tasks, strict=True):
            await _end(socket, task)

    _run(scenario)
