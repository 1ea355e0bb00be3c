"""Plugin loading and typed hook calls.

Built-in behaviour is written as plugins (``DEFAULT_PLUGINS``) and registered
exactly like third-party plugins, which come from the ``notifycore``
entry-point group. Loading is explicit, lazy and happens once;
``NOTIFYCORE_DISABLE_PLUGINS=a,b`` blocks plugins by name, and
``NOTIFYCORE_LOAD_PLUGINS=a,b`` loads only those installed plugins (empty: none;
the default plugins still load). The rest of the
code calls hooks only through the typed methods of :class:`Plugins`, which
also skip hooks that nobody implements.

Any hook may be implemented ``async def``. Hooks called from async code have
an awaitable twin (``abefore_send``, ``aauthorize``...) that awaits such
implementations in the caller's event loop, so an async endpoint never blocks
its loop on a hook; the sync method runs them on a helper event loop in a
thread and waits. Sync implementations run where the hook is called, either
way. A first-result hook keeps its meaning: an async implementation that
answers None leaves the decision to the next one.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from notifycore import hookspecs
from notifycore.errors import ConfigurationError
from notifycore.loop_thread import LoopThread

if TYPE_CHECKING:
    from notifycore.backends.base import Backend
    from notifycore.event import Event
    from notifycore.hub import Hub
    from notifycore.notifications import Notifications
    from notifycore.result import SendResult
    from notifycore.settings import Setting

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "PluginInfo", "Plugins", "get_plugins"]

#: Modules registered as plugins before any external one.
DEFAULT_PLUGINS: tuple[str, ...] = ("notifycore.core_plugin",)
#: The entry-point group external plugins register in.
ENTRY_POINT_GROUP = "notifycore"
DISABLE_ENV = "NOTIFYCORE_DISABLE_PLUGINS"
#: When set, only these installed plugins load (comma-separated; empty: none).
LOAD_ENV = "NOTIFYCORE_LOAD_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """What ``notifycore plugins`` prints about one registered plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


#: The hooks every send calls (``notifycore_consumer_error`` only reports failures).
_SEND_HOOKS = (
    "notifycore_before_send",
    "notifycore_after_send",
    "notifycore_before_consume",
    "notifycore_after_consume",
    "notifycore_metric",
)


def _blocked_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


class Plugins:
    """The plugin manager with one typed method per hook."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("notifycore")
        self.pm.add_hookspecs(hookspecs)
        self._loaded = False
        self._lock = threading.RLock()
        self._active: frozenset[str] = frozenset()
        #: Hooks that some ``async def`` implementation answers.
        self._async: frozenset[str] = frozenset()
        self._loop: LoopThread | None = None
        self._refresh()

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> Plugins:
        """Register the default plugins and the installed ones, once; later calls do nothing."""
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self
            for name in _blocked_from_env():
                self.pm.set_blocked(name)
            only = os.environ.get(LOAD_ENV)
            # None: every installed plugin; set but empty: none, and no look at what is installed
            # (a worker process starts sooner without reading every distribution's entry points).
            wanted = None if only is None else {n.strip() for n in only.split(",") if n.strip()}
            if wanted:
                from importlib.metadata import entry_points

                for ep in entry_points(group=ENTRY_POINT_GROUP):
                    if ep.name not in wanted:
                        self.pm.set_blocked(ep.name)
            for module_name in DEFAULT_PLUGINS:
                # A load() that failed half-way may be tried again: skip what is registered.
                if self.pm.is_blocked(module_name) or self.pm.has_plugin(module_name):
                    continue
                module = importlib.import_module(module_name)
                self.pm.register(module, name=module_name)
            try:
                if wanted is None or wanted:
                    self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
            except Exception as exc:
                raise ConfigurationError(
                    f"a plugin in the {ENTRY_POINT_GROUP!r} entry-point group failed to load: "
                    f"{type(exc).__name__}: {exc} (block it with {DISABLE_ENV}=name)"
                ) from exc
            self.pm.check_pending()
            self._loaded = True
            self._refresh()
        return self

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object or module at run time (tests, applications)."""
        with self._lock:
            registered = self.pm.register(plugin, name=name)
            if registered is None:
                raise ConfigurationError(f"plugin {name or plugin!r} is blocked")
            try:
                self.pm.check_pending()
                self._refresh()
            except BaseException:
                self.pm.unregister(name=registered)
                self._refresh()
                raise
            return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> None:
        """Remove a plugin registered with :meth:`register`."""
        with self._lock:
            self.pm.unregister(plugin, name=name)
            self._refresh()

    def _refresh(self) -> None:
        active = set()
        coroutines = set()
        for hook_name in dir(self.pm.hook):
            caller = getattr(self.pm.hook, hook_name)
            if not isinstance(caller, pluggy.HookCaller) or not caller.get_hookimpls():
                continue
            active.add(hook_name)
            impls = caller.get_hookimpls()
            if any(inspect.iscoroutinefunction(impl.function) for impl in impls):
                coroutines.add(hook_name)
                if any(impl.hookwrapper or impl.wrapper for impl in impls):
                    raise ConfigurationError(
                        f"{hook_name} has an async def implementation and a hook wrapper; "
                        "wrappers cannot wrap async implementations"
                    )
        self._active = frozenset(active)
        self._async = frozenset(coroutines)
        #: Whether a hook that runs on every send has a synchronous implementation, which
        #: would block an event loop that ``asend()`` runs on.
        self.sync_send_hooks = any(
            not inspect.iscoroutinefunction(impl.function)
            for hook_name in _SEND_HOOKS
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
        )
        self.has_before_send = "notifycore_before_send" in active
        self.has_after_send = "notifycore_after_send" in active
        self.has_before_consume = "notifycore_before_consume" in active
        self.has_after_consume = "notifycore_after_consume" in active
        self.has_metric = "notifycore_metric" in active

    def implements(self, hook_name: str) -> bool:
        """True when at least one registered plugin implements ``hook_name``."""
        return hook_name in self._active

    def list_plugins(self) -> list[PluginInfo]:
        """The registered plugins with their distribution and version when known."""
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist: Any = dists.get(id(plugin))
            dist_name = version = None
            if dist is not None:
                dist_name, version = dist.project_name, dist.version
            elif isinstance(name, str) and name.startswith("notifycore."):
                dist_name, version = "notifycore", _version("notifycore")
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name, dist_name, version, hooks))
        return infos

    # -- calling hooks: sync and async faces ---------------------------------------------------

    def _helper_loop(self) -> LoopThread:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    self._loop = LoopThread("notifycore-hooks")
        return self._loop

    def _call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Every implementation's result, each awaited (on the helper loop when async)."""
        results: list[Any] = getattr(self.pm.hook, hook)(**kwargs)
        if hook not in self._async:
            return results
        with _closing(results):
            return [self._helper_loop().run(r) if inspect.isawaitable(r) else r for r in results]

    async def _acall(self, hook: str, **kwargs: Any) -> list[Any]:
        """Every implementation's result, awaited in the running loop when async."""
        results: list[Any] = getattr(self.pm.hook, hook)(**kwargs)
        if hook not in self._async:
            return results
        with _closing(results):
            return [await r if inspect.isawaitable(r) else r for r in results]

    def _answers(self, hook: str, kwargs: dict[str, Any]) -> Iterator[Any]:
        """A first-result hook's answers one by one, in pluggy's order (awaitables as such)."""
        if hook not in self._async:
            yield getattr(self.pm.hook, hook)(**kwargs)
            return
        # pluggy would stop at the first coroutine, whatever it answers once awaited.
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            yield impl.function(*(kwargs[name] for name in impl.argnames))

    def _first(self, hook: str, **kwargs: Any) -> Any:
        """The first answer that is not None (async ones run on the helper loop)."""
        for answer in self._answers(hook, kwargs):
            if inspect.isawaitable(answer):
                answer = self._helper_loop().run(answer)
            if answer is not None:
                return answer
        return None

    async def _afirst(self, hook: str, **kwargs: Any) -> Any:
        """:meth:`_first` for async code: async answers are awaited in the running loop."""
        for answer in self._answers(hook, kwargs):
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                return answer
        return None

    # -- typed hook calls --------------------------------------------------------------------

    def register_settings(self, register: Callable[[Setting], None]) -> None:
        self._call("notifycore_register_settings", register=register)

    def init_app(self, notifications: Notifications, app: Any) -> bool:
        return bool(self._first("notifycore_init_app", notifications=notifications, app=app))

    def notifications_created(self, notifications: Notifications) -> None:
        self._call("notifycore_notifications_created", notifications=notifications)

    def before_send(self, notifications: Notifications, event: Event) -> None:
        self._call("notifycore_before_send", notifications=notifications, event=event)

    async def abefore_send(self, notifications: Notifications, event: Event) -> None:
        await self._acall("notifycore_before_send", notifications=notifications, event=event)

    def after_send(self, notifications: Notifications, event: Event, result: SendResult) -> None:
        self._call("notifycore_after_send", notifications=notifications, event=event, result=result)

    async def aafter_send(
        self, notifications: Notifications, event: Event, result: SendResult
    ) -> None:
        await self._acall(
            "notifycore_after_send", notifications=notifications, event=event, result=result
        )

    def before_consume(self, hub: Hub, consumer: str, event: Event) -> None:
        self._call("notifycore_before_consume", hub=hub, consumer=consumer, event=event)

    async def abefore_consume(self, hub: Hub, consumer: str, event: Event) -> None:
        await self._acall("notifycore_before_consume", hub=hub, consumer=consumer, event=event)

    def after_consume(self, hub: Hub, consumer: str, event: Event) -> None:
        self._call("notifycore_after_consume", hub=hub, consumer=consumer, event=event)

    async def aafter_consume(self, hub: Hub, consumer: str, event: Event) -> None:
        await self._acall("notifycore_after_consume", hub=hub, consumer=consumer, event=event)

    def consumer_error(self, hub: Hub, consumer: str, event: Event, error: BaseException) -> None:
        self._call(
            "notifycore_consumer_error", hub=hub, consumer=consumer, event=event, error=error
        )

    async def aconsumer_error(
        self, hub: Hub, consumer: str, event: Event, error: BaseException
    ) -> None:
        await self._acall(
            "notifycore_consumer_error", hub=hub, consumer=consumer, event=event, error=error
        )

    def authorize(self, principal: Any, stream: str) -> bool | None:
        """The first plugin's answer, or None when no plugin decides."""
        answer = self._first("notifycore_authorize", principal=principal, stream=stream)
        return None if answer is None else bool(answer)

    async def aauthorize(self, principal: Any, stream: str) -> bool | None:
        """:meth:`authorize` for async code."""
        answer = await self._afirst("notifycore_authorize", principal=principal, stream=stream)
        return None if answer is None else bool(answer)

    def authorize_send(self, principal: Any, event: Event) -> bool | None:
        """The first plugin's answer, or None when no plugin decides."""
        answer = self._first("notifycore_authorize_send", principal=principal, event=event)
        return None if answer is None else bool(answer)

    async def aauthorize_send(self, principal: Any, event: Event) -> bool | None:
        """:meth:`authorize_send` for async code."""
        answer = await self._afirst("notifycore_authorize_send", principal=principal, event=event)
        return None if answer is None else bool(answer)

    def load_preferences(self, user: str) -> Any:
        """The app's stored preferences of ``user`` (the first answer), or None: notifycore's."""
        return self._first("notifycore_load_preferences", user=user)

    def save_preferences(self, user: str, preferences: dict[str, dict[str, bool]]) -> bool:
        """True when a plugin stored ``user``'s preferences itself."""
        return bool(self._first("notifycore_save_preferences", user=user, preferences=preferences))

    def metric(self, name: str, value: float = 1, tags: dict[str, str] | None = None) -> None:
        if self.has_metric:
            self._call("notifycore_metric", name=name, value=value, tags=tags or {})

    async def ametric(
        self, name: str, value: float = 1, tags: dict[str, str] | None = None
    ) -> None:
        if self.has_metric:
            await self._acall("notifycore_metric", name=name, value=value, tags=tags or {})

    def backend_state(self, backend: Backend, state: str, error: BaseException | None) -> None:
        self._call("notifycore_backend_state", backend=backend, state=state, error=error)


class _closing:
    """Close the coroutines of ``results`` left unawaited when awaiting one of them failed."""

    def __init__(self, results: list[Any]) -> None:
        self.results = results

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            for result in self.results:
                if inspect.iscoroutine(result) and inspect.getcoroutinestate(result) == (
                    inspect.CORO_CREATED
                ):
                    result.close()


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


_plugins: Plugins | None = None
_plugins_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide plugin manager, loaded on first use."""
    global _plugins
    if _plugins is None:
        with _plugins_lock:
            if _plugins is None:
                _plugins = Plugins()
    return _plugins.load()
