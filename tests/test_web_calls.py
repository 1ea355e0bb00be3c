"""The steps both web adapters run: sync callables, async ones, hooks, cancellation."""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest

from notifycore import hookimpl
from notifycore.plugins import Plugins
from notifycore.testing import await_for, wait_for
from notifycore.web.calls import Call, FirstAnswer, Steps, _is_async, arun, finish_running, run


def where(label: str) -> tuple[str, int]:
    return label, threading.get_ident()


async def awhere(label: str) -> tuple[str, int]:
    return label, threading.get_ident()


def both() -> Steps[list[tuple[str, int]]]:
    first = yield Call(where, ("sync",))
    second = yield Call(awhere, ("async",))
    return [first, second]


def failing() -> Steps[str]:
    def broken() -> None:
        raise LookupError("gone")

    try:
        yield Call(broken)
    except LookupError as exc:
        return f"handled {exc}"
    return "not reached"


def test_run_makes_the_calls_here_and_runs_async_ones_to_completion() -> None:
    here = threading.get_ident()
    assert run(both()) == [("sync", here), ("async", here)]
    assert run(failing()) == "handled gone", "an error is thrown back into the steps"


@pytest.mark.parametrize("to_thread", [None, anyio.to_thread.run_sync], ids=["executor", "anyio"])
def test_arun_awaits_async_calls_on_the_loop_and_runs_sync_ones_in_a_thread(
    to_thread: Any,
) -> None:
    async def main() -> tuple[int, list[tuple[str, int]], str]:
        return (
            threading.get_ident(),
            await arun(both(), to_thread),
            await arun(failing(), to_thread),
        )

    loop_thread, answers, handled = anyio.run(main)
    assert answers[1] == ("async", loop_thread)
    assert answers[0][0] == "sync" and answers[0][1] != loop_thread
    assert handled == "handled gone"


class Early:
    @hookimpl(tryfirst=True)
    def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
        return None  # undecided: the next one is asked


class AsyncNo:
    @hookimpl
    async def notifycore_authorize(self, principal: Any, stream: str) -> bool | None:
        await asyncio.sleep(0)
        return False if stream == "closed" else None


class Yes:
    @hookimpl(trylast=True)
    def notifycore_authorize(self, principal: Any) -> bool | None:
        return True


def test_first_answer_asks_in_pluggys_order_and_awaits_async_implementations() -> None:
    plugins = Plugins()
    for plugin in (Yes(), AsyncNo(), Early()):
        plugins.register(plugin)

    def ask(stream: str) -> Steps[Any]:
        return (
            yield FirstAnswer(plugins, "notifycore_authorize", {"principal": "p", "stream": stream})
        )

    assert [run(ask("closed")), run(ask("open"))] == [False, True]
    assert anyio.run(lambda: arun(ask("closed"))) is False
    assert anyio.run(lambda: arun(ask("open"))) is True


class Wrapper:
    @hookimpl(wrapper=True)
    def notifycore_authorize(self, principal: Any, stream: str) -> Any:
        answer = yield
        return not answer


def test_first_answer_leaves_wrappers_to_pluggy() -> None:
    plugins = Plugins()
    plugins.register(Yes())
    plugins.register(Wrapper())
    steps = FirstAnswer(plugins, "notifycore_authorize", {"principal": "p", "stream": "s"})

    def ask() -> Steps[Any]:
        return (yield steps)

    assert run(ask()) is False


@pytest.mark.parametrize("to_thread", [None, anyio.to_thread.run_sync], ids=["executor", "anyio"])
def test_what_a_thread_makes_for_a_cancelled_request_is_discarded(to_thread: Any) -> None:
    started, release = threading.Event(), threading.Event()
    discarded: list[str] = []

    def make() -> str:
        started.set()
        release.wait(30)
        return "subscription"

    def steps() -> Steps[str]:
        made: str = yield Call(make, discard=discarded.append)
        return made

    async def main() -> None:
        with anyio.move_on_after(30) as scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(arun, steps(), to_thread)
                await anyio.to_thread.run_sync(started.wait, 30)
                tasks.cancel_scope.cancel()
                release.set()
        assert not scope.cancelled_caught, "the request was cancelled at once, not after 30 s"

    anyio.run(main)
    wait_for(lambda: discarded == ["subscription"], 30, "the thread's result to be discarded")


def test_arun_awaits_a_calls_async_twin_on_the_loop_and_run_calls_the_function() -> None:
    def steps() -> Steps[tuple[str, int]]:
        answer: tuple[str, int] = yield Call(where, ("label",), on_loop=awhere)
        return answer

    assert run(steps()) == ("label", threading.get_ident())

    async def main() -> tuple[int, tuple[str, int]]:
        return threading.get_ident(), await arun(steps())

    loop_thread, answer = anyio.run(main)
    assert answer == ("label", loop_thread), "no thread: the twin runs on the loop"


def test_an_async_twin_runs_to_its_end_when_the_request_is_cancelled() -> None:
    finished: list[str] = []

    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def send() -> str:
            started.set()
            await release.wait()
            finished.append("sent")  # a send cut half-way would lose its queued jobs
            return "sent"

        def steps() -> Steps[str]:
            answer: str = yield Call(lambda: "thread", on_loop=send)
            return answer

        request = asyncio.ensure_future(arun(steps()))
        await asyncio.wait_for(started.wait(), 30)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert finished == []
        release.set()
        await await_for(lambda: finished == ["sent"], 30, "the send to finish")

    asyncio.run(main())


def test_an_async_twins_failure_reaches_the_request_and_one_nobody_awaits_goes_nowhere() -> None:
    reported: list[Any] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reported.append(context)
        )

        async def failing() -> str:
            raise LookupError("the backend said no")

        with pytest.raises(LookupError, match="the backend said no"):
            await arun(_one_call(failing))

        started, release = asyncio.Event(), asyncio.Event()

        async def failing_later() -> str:
            started.set()
            await release.wait()
            raise LookupError("too late")

        request = asyncio.ensure_future(arun(_one_call(failing_later)))
        await asyncio.wait_for(started.wait(), 30)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        release.set()
        assert await finish_running(30), "the twin ended"
        # A task or future whose exception nobody retrieved reports it when freed, at once.
        gc.collect()

    asyncio.run(main())
    gc.collect()
    assert reported == [], "an exception nobody waits for is not reported as never retrieved"


def test_a_cancelled_twin_cancels_its_request() -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def endless() -> str:
            started.set()
            await asyncio.Event().wait()
            return "never"

        request = asyncio.ensure_future(arun(_one_call(endless)))
        await asyncio.wait_for(started.wait(), 30)
        for task in asyncio.all_tasks():  # what the loop's end does to the tasks left
            if task is not request and task is not asyncio.current_task():
                task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(request, 30)

    asyncio.run(main())


def test_an_async_twin_has_a_task_of_its_own_for_timeouts_and_task_groups() -> None:
    # A twin started in the request's task would have asyncio.timeout and TaskGroup take that
    # task for its own: the request cancelled, the twin's timeout never firing.
    async def timed() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()  # never set: only the timeout ends it
        except TimeoutError:
            return "timed out"
        return "not timed out"

    async def grouped() -> str:
        async def child() -> None:
            raise LookupError("child failed")

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(child())
                await asyncio.Event().wait()  # cancelled by the failing child
        except ExceptionGroup as failed:
            return f"group failed: {failed.exceptions[0]}"
        return "group ended"

    async def main() -> list[str]:
        return [
            await asyncio.wait_for(arun(_one_call(timed)), 30),
            await asyncio.wait_for(arun(_one_call(grouped)), 30),
        ]

    assert asyncio.run(main()) == ["timed out", "group failed: child failed"]


def _one_call(twin: Any) -> Steps[Any]:
    answer = yield Call(lambda: None, on_loop=twin)
    return answer


def test_what_is_awaited_is_what_inspect_calls_a_coroutine_function() -> None:
    class Caller:
        async def __call__(self, x: int) -> int:
            return x

        async def method(self) -> None:
            return None

        def sync_method(self) -> None:
            return None

    async def coroutine_function() -> None:
        return None

    def plain() -> None:
        return None

    async def generator() -> Any:
        yield 1

    callables: list[Any] = [
        coroutine_function,
        plain,
        generator,
        lambda: None,
        functools.partial(coroutine_function),
        functools.partial(plain),
        Caller(),
        Caller().method,
        Caller().sync_method,
        len,
    ]
    for function in callables:
        expected = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            getattr(function, "__call__", None)  # noqa: B004
        )
        assert _is_async(function) is expected, function
    assert [_is_async(f) for f in callables[:4]] == [True, False, False, False]
