"""Hubs and listeners declared in configuration, loaded through Kinto's listener contract.

``HUBS`` maps a hub label to its ``filter`` (the dict form of filters) and the
``listeners`` it hands events to; ``LISTENERS`` maps a listener name to
``use`` (an entry point of ``notifycore.consumers``, a dotted module, or
``pkg.mod:Class``), ``mode`` (``inline`` or ``queued``, with an optional
``queue``), Kinto's ``actions`` and ``resources`` (filters on the event's
``action`` and ``resource`` fields) and any further keys, which the listener's
``load_from_config(config, prefix)`` reads itself under ``listeners.<name>.``.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from notifycore import drivers
from notifycore.consumers import Consumer
from notifycore.errors import ConfigurationError, InvalidFilter
from notifycore.filters import Always, And, EventFilter, Field, Or, filter_from_dict

if TYPE_CHECKING:
    from notifycore.hub import Hub
    from notifycore.notifications import Notifications

__all__ = [
    "ACTION_FIELD",
    "DEFAULT_HUB",
    "HUB_KEYS",
    "LISTENER_KEYS",
    "RESOURCE_FIELD",
    "Declarations",
    "HubSpec",
    "ListenerConfig",
    "ListenerSpec",
    "LoadedHubs",
    "build_hubs",
    "install_hubs",
    "load_hubs",
    "load_listener",
    "parse_declarations",
    "remove_hubs",
    "resolve_use",
]

#: The keys a hub declaration may have.
HUB_KEYS = ("filter", "listeners")
#: The keys notifycore reads from a listener declaration; any other key is the listener's own.
LISTENER_KEYS = (
    "use",
    "mode",
    "queue",
    "filter",
    "actions",
    "resources",
    "max_tries",
    "dedupe",
    "job_timeout",
)
#: The event field Kinto's ``actions`` key filters on.
ACTION_FIELD = "action"
#: The event field Kinto's ``resources`` key filters on.
RESOURCE_FIELD = "resource"
#: The hub that listeners no declared hub names are put on; it passes every event.
DEFAULT_HUB = "listeners"

Mode = Literal["inline", "queued"]
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# -- value conversion: INI files and the environment give strings ------------------------------


def _as_str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{key} must be a non-empty str, not {_show(value)}")
    return value.strip()


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"{key} must be bool (true or false), not {_show(value)}")


def _as_int(key: str, value: Any, minimum: int | None = None) -> int:
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = value
    if not isinstance(number, int) or isinstance(number, bool):
        raise ConfigurationError(f"{key} must be int, not {_show(value)}")
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{key} must be at least {minimum}, not {number}")
    return number


def _as_float(key: str, value: Any) -> float:
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = value
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        raise ConfigurationError(f"{key} must be float, not {_show(value)}")
    return float(number)


def _as_list(key: str, value: Any) -> list[str]:
    """A list of strings, or a string of names separated by spaces, commas or new lines."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(item, str) and item for item in items
    ):
        raise ConfigurationError(f"{key} must be a list of strings, not {_show(value)}")
    return list(items)


def _as_filter(key: str, value: Any) -> EventFilter:
    if isinstance(value, EventFilter):
        return value
    if isinstance(value, str):  # INI and the environment give the dict form as JSON
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigurationError(
                f"{key} must be a filter table (JSON in an INI file), not {value!r}"
            ) from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key} must be a filter table, not {_show(value)}")
    try:
        return filter_from_dict(value)
    except InvalidFilter as exc:
        raise ConfigurationError(f"{key}: {exc}") from None


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _unknown(key: str, name: str, known: Iterable[str], what: str) -> ConfigurationError:
    message = f"{key}: unknown {what} {name!r} (known: {', '.join(sorted(known)) or 'none'})"
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return ConfigurationError(message)


# -- declarations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenerSpec:
    """One validated ``[listeners.<name>]`` declaration; nothing is imported yet."""

    name: str
    use: str
    mode: Mode = "inline"
    queue: str | None = None
    #: ``filter``, ``actions`` and ``resources`` combined; None lets every event of the hub through.
    filter: EventFilter | None = None
    max_tries: int | None = None
    dedupe: bool = False
    #: Seconds a worker lets the listener run on one job (None: ``JOB_TIMEOUT``).
    timeout: float | None = None
    #: The listener's own keys, as written (strings when they come from an INI file).
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def prefix(self) -> str:
        """The prefix of this listener's keys in :class:`ListenerConfig`: ``listeners.<name>.``."""
        return f"listeners.{self.name}."


@dataclass(frozen=True)
class HubSpec:
    """One validated ``[hubs.<label>]`` declaration."""

    label: str
    filter: EventFilter
    listeners: tuple[str, ...]


@dataclass(frozen=True)
class Declarations:
    """The hubs and listeners a configuration declares."""

    hubs: tuple[HubSpec, ...] = ()
    listeners: Mapping[str, ListenerSpec] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.hubs or self.listeners)


def _listener_spec(name: str, raw: Any) -> ListenerSpec:
    where = f"listeners.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where} must be a table of keys, not {_show(raw)}")
    if "use" not in raw:
        raise ConfigurationError(
            f"{where} needs 'use' (an entry-point name, a dotted module or pkg.mod:Class)"
        )
    use = _as_str(f"{where}.use", raw["use"])
    mode = _as_str(f"{where}.mode", raw.get("mode", "inline")).lower()
    if mode not in ("inline", "queued"):
        raise _unknown(f"{where}.mode", mode, ("inline", "queued"), "mode")
    queue = None
    if raw.get("queue") is not None:
        queue = _as_str(f"{where}.queue", raw["queue"])
        if mode != "queued":
            raise ConfigurationError(f"{where}.queue needs mode = 'queued' (mode is {mode!r})")
    filters: list[EventFilter] = []
    if raw.get("filter") is not None:
        filters.append(_as_filter(f"{where}.filter", raw["filter"]))
    for key, field_name in (("actions", ACTION_FIELD), ("resources", RESOURCE_FIELD)):
        if raw.get(key) is not None:
            values = _as_list(f"{where}.{key}", raw[key])
            if not values:
                raise ConfigurationError(f"{where}.{key} must name at least one {field_name}")
            ors = [Field(field_name, v) for v in dict.fromkeys(values)]
            filters.append(ors[0] if len(ors) == 1 else Or(*ors))
    max_tries = None
    if raw.get("max_tries") is not None:
        max_tries = _as_int(f"{where}.max_tries", raw["max_tries"], minimum=1)
    dedupe = _as_bool(f"{where}.dedupe", raw.get("dedupe", False))
    # Not ``timeout``: listeners such as the SMTP one read that key as their own.
    timeout = None
    if raw.get("job_timeout") is not None:
        timeout = _as_float(f"{where}.job_timeout", raw["job_timeout"])
        if not 0 < timeout < float("inf"):
            raise ConfigurationError(
                f"{where}.job_timeout must be a positive number, not {timeout}"
            )
        if mode != "queued":
            raise ConfigurationError(
                f"{where}.job_timeout needs mode = 'queued' (mode is {mode!r})"
            )
    options = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{where}: keys are strings, not {key!r}")
        if key not in LISTENER_KEYS:
            options[key] = value
    return ListenerSpec(
        name=name,
        use=use,
        mode=mode,  # type: ignore[arg-type]  # checked above
        queue=queue,
        filter=None if not filters else filters[0] if len(filters) == 1 else And(*filters),
        max_tries=max_tries,
        dedupe=dedupe,
        timeout=timeout,
        options=options,
    )


def parse_declarations(hubs: Any = None, listeners: Any = None) -> Declarations:
    """Validate the ``HUBS`` and ``LISTENERS`` tables (nothing is imported or built).

    Listeners that no hub names go on one hub labelled :data:`DEFAULT_HUB`
    that passes every event, as every Kinto listener sees every event.
    """
    specs: dict[str, ListenerSpec] = {}
    if listeners is not None:
        if not isinstance(listeners, Mapping):
            raise ConfigurationError(
                f"LISTENERS must be a table of listeners, not {_show(listeners)}"
            )
        for name, raw in listeners.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ConfigurationError(
                    f"listener names are non-empty strings without dots, not {name!r}"
                )
            specs[name] = _listener_spec(name, raw)
    hub_specs: list[HubSpec] = []
    named: set[str] = set()
    if hubs is not None:
        if not isinstance(hubs, Mapping):
            raise ConfigurationError(f"HUBS must be a table of hubs, not {_show(hubs)}")
        for label, raw in hubs.items():
            where = f"hubs.{label}"
            if not isinstance(raw, Mapping):
                raise ConfigurationError(f"{where} must be a table of keys, not {_show(raw)}")
            for key in raw:
                if key not in HUB_KEYS:
                    raise _unknown(where, str(key), HUB_KEYS, "key")
            flt = (
                Always()
                if raw.get("filter") is None
                else _as_filter(f"{where}.filter", raw["filter"])
            )
            names = _as_list(f"{where}.listeners", raw.get("listeners", []))
            for name in names:
                if name not in specs:
                    raise _unknown(f"{where}.listeners", name, specs, "listener")
            if len(set(names)) != len(names):
                raise ConfigurationError(f"{where}.listeners names a listener twice: {names}")
            named.update(names)
            hub_specs.append(HubSpec(str(label), flt, tuple(names)))
    orphans = tuple(name for name in specs if name not in named)
    if orphans:
        if any(h.label == DEFAULT_HUB for h in hub_specs):
            raise ConfigurationError(
                f"listeners {list(orphans)} are on no hub, and the hub {DEFAULT_HUB!r} they "
                "would go on is declared: name them in a hub's listeners"
            )
        hub_specs.append(HubSpec(DEFAULT_HUB, Always(), orphans))
    return Declarations(tuple(hub_specs), types.MappingProxyType(specs))


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
        return default if value is None else _as_str(key, value)

    def get_bool(self, key: str, default: bool = False) -> bool:
        """``true``/``false`` (``yes``/``no``, ``on``/``off``, ``1``/``0``) or a bool."""
        value = self.get(key)
        return default if value is None else _as_bool(key, value)

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
        return default if value is None else _as_int(key, value, minimum)

    @overload
    def get_float(self, key: str, default: float) -> float: ...
    @overload
    def get_float(self, key: str, default: float | None = None) -> float | None: ...
    def get_float(self, key: str, default: float | None = None) -> float | None:
        """A number (or its text)."""
        value = self.get(key)
        return default if value is None else _as_float(key, value)

    def get_list(self, key: str, default: Iterable[str] = ()) -> list[str]:
        """A list of strings, or one string of names separated by spaces or commas."""
        value = self.get(key)
        return list(default) if value is None else _as_list(key, value)

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
                raise _unknown(
                    f"listeners.{spec.name}", first, config.looked_at(spec.prefix), "key"
                )
            return consumer
        if isinstance(target, types.ModuleType):
            raise ConfigurationError(
                f"module {target.__name__!r} has no load_from_config(config, prefix)"
            )
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
                raise _unknown(f"listeners.{spec.name}", key, [*params, *LISTENER_KEYS], "key")
    try:
        signature.bind(**spec.options)
    except TypeError as exc:
        raise ConfigurationError(f"{cls.__name__}{signature}: {exc}") from None
    return cls(**spec.options)


# -- building -------------------------------------------------------------------------------


#: Declared hubs with their listeners loaded, ready for :func:`install_hubs`.
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


def install_hubs(
    notifications: Notifications, loaded: LoadedHubs, *, replace: Iterable[str] = ()
) -> list[Hub]:
    """Remove the hubs named by ``replace``, then create the loaded ones with their listeners."""
    remove_hubs(notifications, replace)
    built: list[Hub] = []
    try:
        for hub_spec, consumers in loaded:
            hub = notifications.create_hub(hub_spec.label).filter_by(hub_spec.filter)
            built.append(hub)
            for listener, consumer in consumers:
                hub.register_consumer(
                    consumer,
                    name=listener.name,
                    mode=listener.mode,
                    filter=listener.filter,
                    queue=listener.queue,
                    max_tries=listener.max_tries,
                    dedupe=listener.dedupe,
                    timeout=listener.timeout,
                )
    except BaseException:
        remove_hubs(notifications, [hub.label for hub in built])
        raise
    return built


def build_hubs(
    notifications: Notifications, declarations: Declarations, *, replace: Iterable[str] = ()
) -> list[Hub]:
    """Create the declared hubs on ``notifications`` with their listeners registered.

    Every listener is loaded first: one that fails to load leaves every hub
    as it was. A listener named by two hubs is loaded once per hub.
    """
    replace = list(replace)
    return install_hubs(
        notifications, load_hubs(notifications, declarations, replace=replace), replace=replace
    )


def remove_hubs(notifications: Notifications, labels: Iterable[str]) -> None:
    """Remove hubs (those built from an earlier configuration) and close their consumers."""
    for label in labels:
        if label in notifications.hubs:
            hub = notifications.remove_hub(label)
            for registration in hub.registrations:
                registration.consumer.close()
