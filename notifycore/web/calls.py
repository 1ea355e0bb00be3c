"""Web logic written once, run by a sync adapter (Flask) or an async one (Starlette).

A route's logic is a generator of *steps*: each ``yield`` hands the driver a
call that may block — the app's ``authenticate`` or ``authorize``, an
authorisation hook, a backend read, ``send`` — and gets its result back (or
its exception thrown in). :func:`run` makes the calls in the caller's
thread; :func:`arun` awaits ``async def`` callables (and a call's async
twin, ``on_loop``) on the event loop and runs the others in a worker
thread, so an async endpoint never blocks its loop on them.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import FunctionType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from notifycore.plugins import Plugins

__all__ = ["Call", "FirstAnswer", "Step", "Steps", "ToThread", "arun", "finish_running", "run"]

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Call ``function(*args)``; ``discard(result)`` undoes a result nobody waits for any more."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    #: For a call that makes a resource (a subscription): a request cancelled while a
    #: thread still made it would leak it.
    discard: Callable[[Any], None] | None = None
    #: The async twin of ``function`` (a sync one), awaited on the loop by :func:`arun`
    #: instead of running ``function`` in a thread (a thread hop costs more than the work of
    #: a fast send). It runs to the end even when the request is cancelled, as a thread would.
    on_loop: Callable[..., Awaitable[Any]] | None = None


@dataclass(frozen=True)
class FirstAnswer:
    """The first answer other than None of a ``firstresult`` hook's implementations.

    Implementations are asked in pluggy's order; an ``async def`` one is
    awaited like any other call (a sync adapter runs it to completion).
    """

    plugins: Plugins
    hook: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def calls(self) -> list[Call]:
        caller = getattr(self.plugins.pm.hook, self.hook)
        implementations = caller.get_hookimpls()
        if any(i.hookwrapper or i.wrapper for i in implementations):
            # Wrappers need pluggy's own loop: one call, its answer awaited if it is awaitable.
            return [Call(lambda: caller(**self.kwargs))]
        # pluggy calls the last registered first (tryfirst ones sort last, trylast ones first).
        return [
            Call(i.function, tuple(self.kwargs[name] for name in i.argnames))
            for i in reversed(implementations)
        ]


Step = Call | FirstAnswer
#: A generator of steps returning ``T``; drive it with :func:`run` or :func:`arun`.
Steps = Generator[Step, Any, T]
#: Runs a function in a worker thread and returns its result: ``anyio.to_thread.run_sync``...
ToThread = Callable[[Callable[[], Any]], Awaitable[Any]]


def run(steps: Steps[T]) -> T:
    """Drive ``steps`` in this thread; an awaitable answer is run to completion on its own loop."""
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                step = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                value, error = _perform(step), None
            except Exception as exc:
                value, error = None, exc
    finally:
        steps.close()


async def arun(steps: Steps[T], to_thread: ToThread | None = None) -> T:
    """Drive ``steps`` on the running loop: ``async def`` calls awaited, the others in a thread.

    ``to_thread`` runs a function in a worker thread (default: the loop's executor).
    """
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            try:
                step = steps.send(value) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                value, error = await _aperform(step, to_thread or _executor), None
            except Exception as exc:
                value, error = None, exc
    finally:
        steps.close()


def _perform(step: Step) -> Any:
    if isinstance(step, Call):
        return _settle(step.function(*step.args))
    for each in step.calls():
        answer = _settle(each.function(*each.args))
        if answer is not None:
            return answer
    return None


async def _aperform(step: Step, to_thread: ToThread) -> Any:
    if isinstance(step, Call):
        return await _acall(step, to_thread)
    for each in step.calls():
        answer = await _acall(each, to_thread)
        if answer is not None:
            return answer
    return None


def _settle(result: Any) -> Any:
    """An awaitable result (an async callable given to a sync adapter), run to completion."""
    if inspect.isawaitable(result):
        return asyncio.run(_wait(result))
    return result


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _is_async(function: Callable[..., Any]) -> bool:
    if type(function) is FunctionType and function.__code__.co_flags & inspect.CO_COROUTINE:
        # An async def function (an adapter's body reader, every request): what
        # iscoroutinefunction answers, without its unwrapping first.
        return True
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 (an object with an async __call__)
    )


async def _acall(step: Call, to_thread: ToThread) -> Any:
    if step.on_loop is not None:  # a sync function's twin: no need to look at the function
        return await _unstoppable(step.on_loop(*step.args))
    if _is_async(step.function):
        return await step.function(*step.args)
    lock = threading.Lock()
    made: list[Any] = []
    abandoned = False

    def work() -> Any:
        result = step.function(*step.args)
        with lock:
            keep = not abandoned
            if keep:
                made.append(result)
        if not keep and step.discard is not None:
            step.discard(result)  # the request went away while this thread made it
        return result

    try:
        result = await to_thread(work)
        if step.discard is not None:
            # A thread runner that cannot be cancelled (anyio's) hands the result back to a
            # request cancelled meanwhile: the cancellation comes at this checkpoint, and the
            # result is discarded. (A result that needs no discarding skips the round through
            # the loop, which costs most when the loop is busiest.)
            await asyncio.sleep(0)
    except BaseException:
        with lock:
            abandoned = True
            leftovers = list(made)
        if step.discard is not None:
            for each in leftovers:  # made, but the request was cancelled: nobody else will
                step.discard(each)
        raise
    if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
        result = await result
    return result


async def _executor(work: Callable[[], Any]) -> Any:
    """``work`` in the loop's default executor; a cancelled request does not wait for it."""
    loop = asyncio.get_running_loop()
    return await _outlive(loop.run_in_executor(None, contextvars.copy_context().run, work))


async def _outlive(future: asyncio.Future[T]) -> T:
    """``await future``; a cancelled request stops waiting for it, not the future itself."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_retrieve)
        raise


#: The async twins running in tasks of their own (their requests may be gone).
_running: set[asyncio.Future[Any]] = set()


async def finish_running(timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for the async twins still running on this loop
    (a send whose request was cancelled); True when none is left.

    A server's shutdown calls it before its loop ends, which would cancel them
    half-way (a thread, by contrast, runs to its end).
    """
    loop = asyncio.get_running_loop()
    tasks = [task for task in list(_running) if task.get_loop() is loop]
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    return not pending


async def _unstoppable(work: Awaitable[T]) -> T:
    """``work`` in a task of its own: a cancelled request does not stop it half-way.

    (Not started at once in the request's task, though a twin that never waits would
    then need no task: ``asyncio.timeout`` and ``TaskGroup`` inside it would take the
    request's task for its own, and cancel that.) The task hands its outcome to a future
    the request awaits, which a cancelled request cancels, not the task: the request
    wakes in the loop's turn after the task ends (``asyncio.shield`` took one turn more,
    its callback in between).
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[T] = loop.create_future()
    task = loop.create_task(_answer(work, answer))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return await answer


async def _answer(work: Awaitable[T], answer: asyncio.Future[T]) -> None:
    """Await ``work``; its result or exception goes to ``answer`` unless nobody waits any more
    (then an exception goes nowhere, as a thread's would)."""
    try:
        result = await work
    except asyncio.CancelledError:
        answer.cancel()  # the task itself was cancelled (the loop ending): so is the request
        raise
    except BaseException as exc:
        if not answer.done():
            answer.set_exception(exc)
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit: the loop's to handle too
    else:
        if not answer.done():
            answer.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" warning
