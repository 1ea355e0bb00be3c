"""Hubs and listeners declared in configuration: the ``HUBS`` and ``LISTENERS`` tables.

``HUBS`` maps a hub label to its ``filter`` (the dict form of filters) and the
``listeners`` it hands events to; ``LISTENERS`` maps a listener name to
``use`` (an entry point of ``notifycore.consumers``, a dotted module, or
``pkg.mod:Class``), ``mode`` (``inline`` or ``queued``, with an optional
``queue``), Kinto's ``actions`` and ``resources`` (filters on the event's
``action`` and ``resource`` fields) and any further keys, the listener's own.
:func:`parse_declarations` validates both tables; nothing is imported or
built here (:mod:`notifycore.listeners` loads the listeners).
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from notifycore.errors import ConfigurationError, InvalidFilter
from notifycore.filters import Always, And, EventFilter, Field, Or, filter_from_dict
from notifycore.settings import parse_text, split_names

__all__ = [
    "ACTION_FIELD",
    "DEFAULT_HUB",
    "HUB_KEYS",
    "LISTENER_KEYS",
    "RESOURCE_FIELD",
    "Declarations",
    "HubSpec",
    "ListenerSpec",
    "parse_declarations",
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


# -- value conversion: INI files and the environment give strings ------------------------------


def as_str(key: str, value: Any) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{key} must be a non-empty str, not {_show(value)}")
    return value.strip()


def as_bool(key: str, value: Any) -> bool:
    """A bool, or its text (see :func:`~notifycore.settings.parse_text`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            answer: bool = parse_text(value, bool)
            return answer
        except ValueError:
            pass
    raise ConfigurationError(f"{key} must be bool (true or false), not {_show(value)}")


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    """``value``, or the number its text means (the text itself when it means none)."""
    if isinstance(value, str):
        try:
            return parse_text(value, kind)
        except ValueError:
            return value
    return value


def as_int(key: str, value: Any, minimum: int | None = None) -> int:
    """An integer, or its text; ``minimum`` is checked."""
    number = _number(value, int)
    if not isinstance(number, int) or isinstance(number, bool):
        raise ConfigurationError(f"{key} must be int, not {_show(value)}")
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{key} must be at least {minimum}, not {number}")
    return number


def as_float(key: str, value: Any) -> float:
    """A number, or its text."""
    number = _number(value, float)
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        raise ConfigurationError(f"{key} must be float, not {_show(value)}")
    return float(number)


def as_list(key: str, value: Any) -> list[str]:
    """A list of strings, or a string of names separated by spaces, commas or new lines."""
    try:
        return split_names(value)
    except ValueError:
        raise ConfigurationError(f"{key} must be a list of strings, not {_show(value)}") from None


def as_filter(key: str, value: Any) -> EventFilter:
    """A filter, or its dict form (JSON text in an INI file)."""
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


def unknown(key: str, name: str, known: Iterable[str], what: str) -> ConfigurationError:
    """The error for an unknown ``what`` called ``name`` at ``key``, with a "did you mean"."""
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
    use = as_str(f"{where}.use", raw["use"])
    mode = as_str(f"{where}.mode", raw.get("mode", "inline")).lower()
    if mode not in ("inline", "queued"):
        raise unknown(f"{where}.mode", mode, ("inline", "queued"), "mode")
    queue = None
    if raw.get("queue") is not None:
        queue = as_str(f"{where}.queue", raw["queue"])
        if mode != "queued":
            raise ConfigurationError(f"{where}.queue needs mode = 'queued' (mode is {mode!r})")
    filters: list[EventFilter] = []
    if raw.get("filter") is not None:
        filters.append(as_filter(f"{where}.filter", raw["filter"]))
    for key, field_name in (("actions", ACTION_FIELD), ("resources", RESOURCE_FIELD)):
        if raw.get(key) is not None:
            values = as_list(f"{where}.{key}", raw[key])
            if not values:
                raise ConfigurationError(f"{where}.{key} must name at least one {field_name}")
            ors = [Field(field_name, v) for v in dict.fromkeys(values)]
            filters.append(ors[0] if len(ors) == 1 else Or(*ors))
    max_tries = None
    if raw.get("max_tries") is not None:
        max_tries = as_int(f"{where}.max_tries", raw["max_tries"], minimum=1)
    dedupe = as_bool(f"{where}.dedupe", raw.get("dedupe", False))
    # Not ``timeout``: listeners such as the SMTP one read that key as their own.
    timeout = None
    if raw.get("job_timeout") is not None:
        timeout = as_float(f"{where}.job_timeout", raw["job_timeout"])
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
                    raise unknown(where, str(key), HUB_KEYS, "key")
            flt = (
                Always()
                if raw.get("filter") is None
                else as_filter(f"{where}.filter", raw["filter"])
            )
            names = as_list(f"{where}.listeners", raw.get("listeners", []))
            for name in names:
                if name not in specs:
                    raise unknown(f"{where}.listeners", name, specs, "listener")
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
