"""Loading listeners through Kinto's contract: ``use`` names the code, ``load_from_config`` builds it.

A declared listener (:class:`~notifycore.declarations.ListenerSpec`) names
what to import with ``use``; :func:`load_listener` imports it and builds the
consumer — with ``load_from_config(config, prefix)`` when it offers one, which
reads its own keys from a :class:`ListenerConfig` under ``listeners.<name>.``,
else, for a consumer class, with ``Consumer.from_settings(settings, **keys)``.
:func:`load_hubs` loads every listener of the declared hubs; the
``Notifications`` object then installs them.
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

from notifycore import drivers
from notifycore.consumers import Consumer
from notifycore.declarations import (
    LISTENER_KEYS,
    Declarations,
    HubSpec,
    ListenerSpec,
    as_bool,
    as_float,
    as_int,
    as_list,
    as_str,
    unknown,
)
from notifycore.errors import ConfigurationError
from notifycore.settings import parse_text

if TYPE_CHECKING:
    from notifycore.notifications import Notifications

__all__ = [
    "ListenerConfig",
    "LoadedHubs",
    "load_hubs",
    "load_listener",
    "resolve_use",
]


# -- Kinto's contract -----------------------------------------------------------------------


class ListenerConfig(Mapping[str, Any]):
    """The ``config`` that ``load_from_config(config, prefix)`` receives.

    A read-only mapping of flat keys, as Kinto's settings are: each
    listener's keys as ``listeners.<name>.<key>`` (``prefix`` is
    ``listeners.<name>.``), and every validated setting under its own name
    (``MAIL_SERVER``...). ``get_settings()`` returns the mapping itself, so a
    Kinto listener's ``config.get_settings()[prefix + "url"]`` works. The
    typed getters convert the strings of INI files and raise a
    :class:`ConfigurationError` naming the key and the expected type.

    A listener's keys that its ``load_from_config`` never looked at are
    reported as unknown, with a "did you mean" among those it did look at.
    """

    def __init__(
        self,
        flat: Mapping[str, Any],
        *,
        settings: Mapping[str, Any] | None = None,
        notifications: Notifications | None = None,
    ) -> None:
        self._data = dict(settings or {})
        self._data.update(flat)
        #: The validated settings (a :class:`~notifycore.settings.Settings`).
        self.settings: Mapping[str, Any] = settings or {}
        #: The ``Notifications`` being built (None when only checking).
        self.notifications = notifications
        self._looked_at: set[str] = set()
        self._took_all = False

    @classmethod
    def from_declarations(
        cls,
        declarations: Declarations,
        *,
        settings: Mapping[str, Any] | None = None,
        notifications: Notifications | None = None,
    ) -> ListenerConfig:
        """The flat form of every declared listener's keys."""
        flat: dict[str, Any] = {}
        for spec in declarations.listeners.values():
            flat[spec.prefix + "use"] = spec.use
            flat[spec.prefix + "mode"] = spec.mode
            if spec.queue is not None:
                flat[spec.prefix + "queue"] = spec.queue
            for key, value in spec.options.items():
                flat[spec.prefix + key] = value
        return cls(flat, settings=settings, notifications=notifications)

    def fresh(self) -> ListenerConfig:
        """The same keys, with nothing looked at yet (one per listener loaded)."""
        copy = ListenerConfig({}, settings=self.settings, notifications=self.notifications)
        copy._data = self._data
        return copy

    # Mapping face: reads are recorded to find keys nobody reads.
    def __getitem__(self, key: str) -> Any:
        self._looked_at.add(key)
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._looked_at.add(key)
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        self._took_all = True  # a listener that walks the keys takes them all as its own
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ListenerConfig({sorted(self._data)})"

    def get_settings(self) -> ListenerConfig:
        """Kinto's (Pyramid's) spelling: the flat settings, this mapping."""
        return self

    def options(self, prefix: str) -> dict[str, Any]:
        """The keys under ``prefix``, without it (``use`` and ``mode`` too)."""
        self._took_all = True
        return {k[len(prefix) :]: v for k, v in self._data.items() if k.startswith(prefix)}

    @overload
    def get_str(self, key: str, default: str) -> str: ...
    @overload
    def get_str(self, key: str, default: str | None = None) -> str | None: ...
    def get_str(self, key: str, default: str | None = None) -> str | None:
        """The string at ``key``; ``default`` when it is missing."""
        value = self.get(key)
        return default if value is None else as_str(key, value)

    def get_bool(self, key: str, default: bool = False) -> bool:
        """``true``/``false`` (``yes``/``no``, ``on``/``off``, ``1``/``0``) or a bool."""
        value = self.get(key)
        return default if value is None else as_bool(key, value)

    @overload
    def get_int(self, key: str, default: int, *, minimum: int | None = None) -> int: ...
    @overload
    def get_int(
        self, key: str, default: int | None = None, *, minimum: int | None = None
    ) -> int | None: ...
    def get_int(
        self, key: str, default: int | None = None, *, minimum: int | None = None
    ) -> int | None:
        """An integer (or its text); ``minimum`` is checked."""
        value = self.get(key)
        return default if value is None else as_int(key, value, minimum)

    @overload
    def get_float(self, key: str, default: float) -> float: ...
    @overload
    def get_float(self, key: str, default: float | None = None) -> float | None: ...
    def get_float(self, key: str, default: float | None = None) -> float | None:
        """A number (or its text)."""
        value = self.get(key)
        return default if value is None else as_float(key, value)

    def get_list(self, key: str, default: Iterable[str] = ()) -> list[str]:
        """A list of strings, or one string of names separated by spaces or commas."""
        value = self.get(key)
        return list(default) if value is None else as_list(key, value)

    def unread(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (other than notifycore's own) that nobody looked at."""
        if self._took_all:
            return []
        return [
            k
            for k in self._data
            if k.startswith(prefix)
            and k[len(prefix) :] not in LISTENER_KEYS
            and k not in self._looked_at
        ]

    def looked_at(self, prefix: str) -> list[str]:
        """The keys under ``prefix`` that were asked for (present or not), without it."""
        return sorted(k[len(prefix) :] for k in self._looked_at if k.startswith(prefix))


def resolve_use(use: str) -> Any:
    """What ``use`` names: a ``notifycore.consumers`` entry point, a module, or ``pkg.mod:Attr``."""
    if ":" not in use and "." in use:
        try:
            return importlib.import_module(use)
        except ModuleNotFoundError as exc:
            # A module that exists but imports something missing is an error of its own.
            if exc.name != use and (exc.name is None or not use.startswith(exc.name + ".")):
                raise ConfigurationError(f"cannot import {use!r}: {exc}") from exc
        # not a module: pkg.mod.Class
    return drivers.resolve(drivers.CONSUMERS, use)


def _check_consumer(spec: ListenerSpec, made: Any, origin: str) -> Consumer | Any:
    if made is None:
        raise ConfigurationError(f"listener {spec.name!r}: {origin} returned None, not a consumer")
    if isinstance(made, type) or not (isinstance(made, Consumer) or callable(made)):
        raise ConfigurationError(
            f"listener {spec.name!r}: {origin} returned {made!r}, "
            "not a Consumer instance or a callable"
        )
    return made


def load_listener(spec: ListenerSpec, config: ListenerConfig) -> Consumer | Any:
    """Import what ``spec.use`` names and build the consumer (Kinto's ``load_from_config``).

    - anything with ``load_from_config`` (a module, or a class offering it as
      a classmethod): ``load_from_config(config, prefix)`` builds it;
    - a :class:`Consumer` class: ``cls.from_settings(settings, **keys)``, the
      same path code takes, so a plugin's settings reach it and the listener's
      own keys win over them (INI text converted to the constructor's
      ``int``, ``float`` and ``bool`` annotations);
    - another class: instantiated with the listener's own keys as keyword arguments;
    - a function: registered as the consumer itself (it takes no keys).
    """
    where = f"listener {spec.name!r} (use = {spec.use!r})"
    try:
        target = resolve_use(spec.use)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc
    config = config.fresh()
    factory = getattr(target, "load_from_config", None)
    try:
        if factory is not None:
            made = factory(config, spec.prefix)
            consumer = _check_consumer(
                spec, made, f"{getattr(target, '__name__', target)}.load_from_config"
            )
            unread = config.unread(spec.prefix)
            if unread:
                first = unread[0][len(spec.prefix) :]
                raise unknown(f"listeners.{spec.name}", first, config.looked_at(spec.prefix), "key")
            return consumer
        if isinstance(target, types.ModuleType):
            raise ConfigurationError(
                f"module {target.__name__!r} has no load_from_config(config, prefix)"
            )
        if isinstance(target, type) and issubclass(target, Consumer):
            made = _from_settings(spec, target, config.settings)
            return _check_consumer(spec, made, f"{target.__name__}.from_settings")
        if isinstance(target, type):
            return _check_consumer(spec, _instantiate(spec, target), target.__name__)
        if callable(target):
            if spec.options:
                raise ConfigurationError(
                    f"a function consumer takes no keys, got {sorted(spec.options)}"
                )
            return target
        raise ConfigurationError(f"{target!r} is not a consumer class, a function or a module")
    except ConfigurationError as exc:
        if str(exc).startswith(("listener ", "listeners.")):
            raise
        raise ConfigurationError(f"{where}: {exc}") from exc
    except (TypeError, ValueError, LookupError) as exc:
        raise ConfigurationError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _keywords(function: Any) -> tuple[list[str], bool]:
    """The keyword arguments ``function`` names, and whether it takes any (``**kwargs``)."""
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # some built-in classes have no signature
        return [], True
    named = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _typed_options(spec: ListenerSpec, cls: type) -> dict[str, Any]:
    """The listener's keys, text from an INI file converted to what the constructor declares.

    Only ``int``, ``float`` and ``bool`` annotations are converted (as settings
    from the environment are); anything else is passed as it was written.
    """
    try:
        params = inspect.signature(cls, eval_str=True).parameters
    except Exception:  # annotations that do not resolve: nothing to convert with
        return dict(spec.options)
    options = dict(spec.options)
    for key, value in options.items():
        kind = params[key].annotation if key in params else None
        if isinstance(value, str) and kind in (int, float, bool):
            try:
                options[key] = parse_text(value, kind)
            except ValueError:
                raise ConfigurationError(
                    f"listeners.{spec.name}.{key} must be {kind.__name__}, not {value!r}"
                ) from None
    return options


def _from_settings(spec: ListenerSpec, cls: type[Consumer], settings: Mapping[str, Any]) -> Any:
    """``cls.from_settings(settings, **keys)``: the plugin reads its settings, the keys win."""
    named, takes_any = _keywords(cls.from_settings)
    named = named[1:]  # the settings
    if takes_any:  # from_settings(settings, **options) hands the keys to the constructor
        constructor, takes_any = _keywords(cls)
        named += constructor
    if not takes_any:
        for key in spec.options:
            if key not in named:
                raise unknown(f"listeners.{spec.name}", key, [*named, *LISTENER_KEYS], "key")
    return cls.from_settings(settings, **_typed_options(spec, cls))


def _instantiate(spec: ListenerSpec, cls: type) -> Any:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # some built-in classes have none
        return cls(**spec.options)
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_any:
        for key in spec.options:
            if key not in params:
                raise unknown(f"listeners.{spec.name}", key, [*params, *LISTENER_KEYS], "key")
    try:
        signature.bind(**spec.options)
    except TypeError as exc:
        raise ConfigurationError(f"{cls.__name__}{signature}: {exc}") from None
    return cls(**spec.options)


# -- building -------------------------------------------------------------------------------


#: Declared hubs with their listeners loaded, ready to install (``Notifications`` does).
LoadedHubs = list[tuple[HubSpec, list[tuple[ListenerSpec, Any]]]]


def load_hubs(
    notifications: Notifications,
    declarations: Declarations,
    *,
    settings: Mapping[str, Any] | None = None,
    replace: Iterable[str] = (),
) -> LoadedHubs:
    """Check the declared labels and load every listener, changing nothing yet.

    ``replace`` names the hubs an earlier configuration built, which the new
    ones may take the labels of; ``settings`` (default: the current ones) is
    what listeners see as ``config.settings``.
    """
    replaced = set(replace)
    for hub_spec in declarations.hubs:
        if hub_spec.label in notifications.hubs and hub_spec.label not in replaced:
            raise ConfigurationError(
                f"hubs.{hub_spec.label}: a hub with that label already exists (created in code?)"
            )
    config = ListenerConfig.from_declarations(
        declarations,
        settings=notifications.settings if settings is None else settings,
        notifications=notifications,
    )
    loaded: LoadedHubs = []
    for hub_spec in declarations.hubs:
        specs = [declarations.listeners[name] for name in hub_spec.listeners]
        loaded.append((hub_spec, [(spec, load_listener(spec, config)) for spec in specs]))
    return loaded
