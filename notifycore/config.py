"""Settings: declared keys with types and defaults, read from a mapping and the environment.

Keys are declared through the ``notifycore_register_settings`` hook, so a
plugin's own keys (``REDIS_URL``...) are validated like the core's. Values come
from a mapping and from ``NOTIFYCORE_<KEY>`` environment variables; the
environment wins.
"""

from __future__ import annotations

import configparser
import difflib
import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from notifycore.errors import ConfigurationError

__all__ = ["ENV_PREFIX", "Setting", "Settings", "read_config_file"]

ENV_PREFIX = "NOTIFYCORE_"
#: Environment variables with the prefix that are not settings.
_NOT_SETTINGS = frozenset(
    {
        "NOTIFYCORE_DISABLE_PLUGINS",
        "NOTIFYCORE_LOAD_PLUGINS",
        "NOTIFYCORE_APP",
        "NOTIFYCORE_CONFIG",
    }
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Setting:
    """One configuration key: its name, Python type, default and a line of help."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    #: Also accept objects (a backend class instead of its name, say).
    allow_objects: bool = False
    #: Smallest number allowed (int and float settings).
    minimum: float | None = None

    def convert(self, value: Any, source: str) -> Any:
        """Check (and for strings from the environment, convert) ``value``."""
        if value is None and (self.nullable or self.default is None):
            return None
        if isinstance(value, str) and self.type is not str:
            value = self._parse(value, source)
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, self.type) and not (self.type is int and isinstance(value, bool))
        if not ok and not self.allow_objects:
            raise ConfigurationError(
                f"{self.name} (from {source}) must be {self.type.__name__}, "
                f"not {type(value).__name__}: {value!r}"
            )
        if self.type in (int, float) and isinstance(value, (int, float)):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigurationError(f"{self.name} (from {source}) must be a finite number")
            if self.minimum is not None and value < self.minimum:
                raise ConfigurationError(
                    f"{self.name} (from {source}) must be at least {self.minimum:g}, not {value!r}"
                )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ConfigurationError(
                f"{self.name} (from {source}) must be one of {allowed}, not {value!r}"
            )
        return value

    def _parse(self, text: str, source: str) -> Any:
        try:
            if self.type is bool:
                lowered = text.strip().lower()
                if lowered in _TRUE:
                    return True
                if lowered in _FALSE:
                    return False
                raise ValueError(text)
            return self.type(text.strip())
        except ValueError:
            raise ConfigurationError(
                f"{self.name} (from {source}) must be {self.type.__name__}, not {text!r}"
            ) from None


class Settings(Mapping[str, Any]):
    """Validated settings: every declared key, with its default when not given."""

    def __init__(
        self,
        declared: Mapping[str, Setting],
        values: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.declared = dict(declared)
        resolved = {name: s.default for name, s in self.declared.items()}
        for key, value in (values or {}).items():
            resolved[key] = self._setting(key, "configuration").convert(value, "configuration")
        env = os.environ if environ is None else environ
        for var, text in env.items():
            if not var.startswith(ENV_PREFIX) or var in _NOT_SETTINGS:
                continue
            key = var[len(ENV_PREFIX) :]
            source = f"environment variable {var}"
            resolved[key] = self._setting(key, source).convert(text, source)
        self._values = resolved

    def _setting(self, key: str, source: str) -> Setting:
        setting = self.declared.get(key)
        if setting is None:
            message = f"unknown setting {key!r} (from {source})"
            close = difflib.get_close_matches(key, self.declared, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            raise ConfigurationError(message)
        return setting

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Settings from a TOML, INI or JSON file.

    TOML and JSON: top-level keys, or the keys of a ``notifycore`` table.
    INI: the ``[notifycore]`` section (keys are upper-cased; values are
    strings, converted to each setting's type when validated).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read configuration file {name!r}: {exc.strerror}"
        ) from None
    suffix = os.path.splitext(name)[1].lower()
    try:
        if suffix in (".ini", ".cfg", ".conf"):
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(raw.decode())
            if not parser.has_section("notifycore"):
                raise ConfigurationError(f"{name}: no [notifycore] section")
            return {key.upper(): value for key, value in parser.items("notifycore")}
        data = json.loads(raw) if suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{name}: not valid {suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{name}: the configuration must be a table of settings")
    table = data.get("notifycore", data)
    if not isinstance(table, dict):
        raise ConfigurationError(f"{name}: 'notifycore' must be a table of settings")
    return dict(table)
