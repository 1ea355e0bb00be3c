"""Hooks implemented ``async def``: awaited in the caller's loop by async code, run to their
end on a helper loop by sync code; first-result hooks keep their meaning."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from notifycore import Event, Hub, Notifications, SendResult, hookimpl
from notifycore.errors import ConfigurationError
from notifycore.plugins import Plugins, get_plugins


class AsyncRecorder:
    """Every consume/send hook as a coroutine that notes the thread and loop it ran in."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, threading.Thread, asyncio.AbstractEventLoop]] = []

    async def _note(self, name: str) -> None:
        await asyncio.sleep(0)  # a real suspension: awaited, not just called
        self.calls.append((name, threading.current_thread(), asyncio.get_running_loop()))

    @hookimpl
    async def notifycore_before_send(self, notifications: Notifications, event: Event) -> None:
        await self._note("before_send")

    @hookimpl
    async def notifycore_before_consume(self, hub: Hub, consumer: str, event: Event) -> None:
        await self._note("before_consume")

    @hookimpl
    async def notifycore_after_consume(self, hub: Hub, consumer: str, event: Event) -> None:
        await self._note("after_consume")

    @hookimpl
    async def notifycore_consumer_error(
        self, hub: Hub, consumer: str, event: Event, error: BaseException
    ) -> None:
        await self._note("consumer_error")

    @hookimpl
    async def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
        await self._note(f"metric {name}")

    @hookimpl
    async def notifycore_after_send(
        self, notifications: Notifications, event: Event, result: SendResult
    ) -> None:
        await self._note("after_send")


EXPECTED = [
    "before_send",
    "before_consume",
    "after_consume",
    "before_consume",
    "metric events.failed",
    "consumer_error",
    "after_send",
]


@pytest.fixture
def recorder() -> Iterator[AsyncRecorder]:
    recorder = AsyncRecorder()
    plugins = get_plugins()
    name = plugins.register(recorder, name="async-recorder")
    try:
        yield recorder
    finally:
        plugins.unregister(name=name)


def notifications() -> Notifications:
    n = Notifications(config={"BACKEND": "memory"}, environ={})
    hub = n.create_hub("h")
    hub.register_consumer(lambda event: None, name="fine")

    def broken(event: Event) -> None:
        raise RuntimeError("no")

    hub.register_consumer(broken, name="broken")
    return n


def test_sync_send_runs_async_hooks_to_their_end_outside_its_thread(
    recorder: AsyncRecorder,
) -> None:
    n = notifications()
    try:
        result = n.send(Event(None, "t", "title"))
    finally:
        n.close()
    assert [o.status for o in result.outcomes] == ["ran", "failed"]
    assert [name for name, _, _ in recorder.calls] == EXPECTED
    assert all(thread is not threading.current_thread() for _, thread, _ in recorder.calls)


def test_asend_awaits_async_hooks_in_its_own_loop(recorder: AsyncRecorder) -> None:
    n = notifications()

    async def main() -> tuple[SendResult, asyncio.AbstractEventLoop]:
        return await n.asend(Event(None, "t", "title")), asyncio.get_running_loop()

    try:
        result, loop = asyncio.run(main())
    finally:
        n.close()
    assert [o.status for o in result.outcomes] == ["ran", "failed"]
    assert [name for name, _, _ in recorder.calls] == EXPECTED
    assert all(thread is threading.current_thread() for _, thread, _ in recorder.calls)
    assert all(ran_in is loop for _, _, ran_in in recorder.calls)


def test_an_async_before_send_that_raises_stops_the_send_either_way() -> None:
    class Refuse:
        @hookimpl
        async def notifycore_before_send(self, notifications: Notifications, event: Event) -> None:
            await asyncio.sleep(0)
            raise PermissionError("not today")

    seen: list[Event] = []
    n = Notifications(config={"BACKEND": "memory"}, environ={})
    n.create_hub("h").register_consumer(seen.append, name="seen")
    plugins = get_plugins()
    name = plugins.register(Refuse(), name="refuse")
    try:
        with pytest.raises(PermissionError, match="not today"):
            n.send(Event(None, "t", "x"))
        with pytest.raises(PermissionError, match="not today"):
            asyncio.run(n.asend(Event(None, "t", "x")))
    finally:
        plugins.unregister(name=name)
        n.close()
    assert seen == []


class Undecided:
    @hookimpl(tryfirst=True)
    async def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
        await asyncio.sleep(0)
        return None  # leaves it to the next plugin


class AllowsAlice:
    @hookimpl
    async def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
        await asyncio.sleep(0)
        return True if principal == "alice" else None


class RefusesEveryone:
    @hookimpl(trylast=True)
    def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
        return False


def test_first_result_hooks_go_past_an_async_none_to_the_next_answer() -> None:
    plugins = Plugins()
    plugins.register(Undecided(), name="undecided")
    plugins.register(AllowsAlice(), name="alice")
    plugins.register(RefusesEveryone(), name="nobody")
    assert plugins.authorize("alice", "s") is True
    assert plugins.authorize("bob", "s") is False  # past two async Nones to the sync answer
    assert asyncio.run(plugins.aauthorize("alice", "s")) is True
    assert asyncio.run(plugins.aauthorize("bob", "s")) is False
    plugins.unregister(name="nobody")
    assert plugins.authorize("bob", "s") is None
    assert asyncio.run(plugins.aauthorize("bob", "s")) is None


def test_an_async_implementation_cannot_sit_under_a_hook_wrapper() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def notifycore_authorize(self, principal: Any, stream: str) -> Iterator[None]:
            return (yield)

    plugins = Plugins()
    plugins.register(AllowsAlice(), name="alice")
    with pytest.raises(ConfigurationError, match="cannot wrap async implementations"):
        plugins.register(Wrapper(), name="wrapper")
    assert plugins.authorize("alice", "s") is True, "the refused plugin is not left registered"


def test_a_failing_async_hook_leaves_no_coroutine_unawaited() -> None:
    class Fails:
        @hookimpl(tryfirst=True)
        async def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
            raise RuntimeError("metrics down")

    later: list[str] = []

    class Later:
        @hookimpl(trylast=True)
        async def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
            later.append(name)

    plugins = Plugins()
    plugins.register(Fails(), name="fails")
    plugins.register(Later(), name="later")
    # filterwarnings = error: a coroutine never awaited would fail this test when collected.
    with pytest.raises(RuntimeError, match="metrics down"):
        plugins.metric("m")
    with pytest.raises(RuntimeError, match="metrics down"):
        asyncio.run(plugins.ametric("m"))
    assert later == []
