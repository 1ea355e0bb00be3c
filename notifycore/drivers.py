"""Named drivers: backends and consumers picked by name through stevedore.

A name is either an entry point of the namespace (``redis``), or a dotted path
in either form (``pkg.mod:Class`` or ``pkg.mod.Class``). Only the entry point
asked for is imported, so a broken plugin elsewhere does not stop the others.
The names and setting prefixes of the first-party plugins are known here, so a
missing plugin is reported with the distribution to install.

The core's own drivers (``sqlite``, ``memory``, ``log``...) are found without
listing the installed distributions: a worker process that starts on the
default backend imports neither stevedore nor ``importlib.metadata``. Their
names belong to the core; a plugin cannot take them over.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from notifycore.errors import ConfigurationError, UnknownDriver

if TYPE_CHECKING:
    import importlib.metadata

__all__ = [
    "BACKENDS",
    "CONSUMERS",
    "CORE_DRIVERS",
    "FIRST_PARTY_DRIVERS",
    "FIRST_PARTY_SETTINGS",
    "DriverInfo",
    "available",
    "check_installed",
    "list_drivers",
    "resolve",
    "setting_distribution",
]

BACKENDS = "notifycore.backends"
CONSUMERS = "notifycore.consumers"

#: The drivers of this repository's plugins: namespace -> name -> what to ``pip install``.
FIRST_PARTY_DRIVERS: Final[Mapping[str, Mapping[str, str]]] = {
    BACKENDS: {"redis": "notify-redis", "amqp": "notify-amqp"},
    CONSUMERS: {
        "smtp": "notify-mail",
        "flask_mail": "notify-mail[flask-mail]",
        "flask_email": "notify-mail[flask-email]",
    },
}
#: The core's own entry points (pyproject.toml), resolved without a look at the installed
#: distributions: namespace -> name -> ``module:attribute``.
CORE_DRIVERS: Final[Mapping[str, Mapping[str, str]]] = {
    BACKENDS: {
        "memory": "notifycore.backends.memory:MemoryBackend",
        "sqlite": "notifycore.backends.sqlite:SQLiteBackend",
    },
    CONSUMERS: {
        "function": "notifycore.consumers:FunctionConsumer",
        "log": "notifycore.consumers:LogConsumer",
        "push": "notifycore.consumers:PushConsumer",
    },
}
#: The setting-name prefixes of this repository's plugins -> the distribution declaring them.
FIRST_PARTY_SETTINGS: Final[Mapping[str, str]] = {
    "REDIS_": "notify-redis",
    "AMQP_": "notify-amqp",
    "MAIL_": "notify-mail",
}


@dataclass(frozen=True)
class DriverInfo:
    """One entry point of a driver namespace, without importing it."""

    name: str
    target: str
    distribution: str | None
    version: str | None


def _entry_points(namespace: str) -> list[importlib.metadata.EntryPoint]:
    from stevedore import NamedExtensionManager  # only a look at the installed plugins needs it

    # names=[] lists the namespace through stevedore's cache without loading anything.
    manager: NamedExtensionManager[Any] = NamedExtensionManager(
        namespace, names=[], on_missing_entrypoints_callback=None
    )
    return list(manager.list_entry_points())


def available(namespace: str) -> list[str]:
    """Sorted entry-point names of ``namespace``."""
    return sorted({ep.name for ep in _entry_points(namespace)})


def list_drivers(namespace: str) -> list[DriverInfo]:
    """Every entry point of ``namespace`` with the distribution that provides it."""
    from importlib.metadata import entry_points

    # stevedore's cache drops the distribution; importlib.metadata still knows it.
    owners = {(ep.name, ep.value): ep.dist for ep in entry_points(group=namespace)}
    infos = []
    for ep in sorted(_entry_points(namespace), key=lambda e: e.name):
        dist = getattr(ep, "dist", None) or owners.get((ep.name, ep.value))
        infos.append(
            DriverInfo(
                ep.name,
                ep.value,
                dist.metadata["Name"] if dist is not None else None,
                dist.version if dist is not None else None,
            )
        )
    return infos


def _import_path(namespace: str, path: str) -> Any:
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(f"{path!r} is not a {namespace} name or a dotted path")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} for {path!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    return target


def check_installed(namespace: str, name: str) -> None:
    """Raise :class:`UnknownDriver` naming the distribution when ``name`` is a first-party
    driver whose plugin is not installed; otherwise do nothing."""
    distribution = FIRST_PARTY_DRIVERS.get(namespace, {}).get(name)
    if distribution is None:
        return
    names = available(namespace)
    if name not in names:
        raise UnknownDriver(namespace, name, names, (), distribution)


def setting_distribution(key: str) -> str | None:
    """The first-party distribution that declares setting ``key`` (by its prefix), if any."""
    for prefix, distribution in FIRST_PARTY_SETTINGS.items():
        if key.startswith(prefix):
            return distribution
    return None


def resolve(namespace: str, spec: str | type) -> Any:
    """The class (or factory) that ``spec`` names in ``namespace``."""
    if not isinstance(spec, str):
        return spec
    spec = spec.strip()
    if ":" in spec or "." in spec:
        return _import_path(namespace, spec)
    core = CORE_DRIVERS.get(namespace, {}).get(spec)
    if core is not None:
        return _import_path(namespace, core)
    check_installed(namespace, spec)
    names = available(namespace)
    if spec not in names:
        import difflib

        raise UnknownDriver(
            namespace, spec, names, difflib.get_close_matches(spec, names, n=1, cutoff=0.5)
        )
    from stevedore import DriverManager

    try:
        manager: DriverManager[Any] = DriverManager(
            namespace, spec, on_missing_entrypoints_callback=None
        )
    except ImportError as exc:
        # A plugin installed without the extra a driver needs says which one (notify-mail's).
        raise ConfigurationError(
            f"the {namespace} driver {spec!r} cannot be imported: {exc}"
        ) from exc
    except Exception as exc:
        raise ConfigurationError(
            f"the {namespace} driver {spec!r} is installed but failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return manager.driver
