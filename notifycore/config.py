"""Configuration sources: every way settings arrive, read into one canonical mapping.

:func:`load_config` takes a mapping (a Flask config, with an optional key
prefix) or the path of a TOML, INI or JSON file (:func:`read_config_file`) and
returns the same canonical form: upper-case setting names, and the ``HUBS``
and ``LISTENERS`` tables gathered from nested tables or Kinto's flat keys.
Nothing is validated here but the shape: :class:`~notifycore.settings.Settings`
checks names and types and adds the environment.
"""

from __future__ import annotations

import configparser
import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from notifycore.errors import ConfigurationError
from notifycore.settings import split_names

__all__ = ["load_config", "read_config_file"]


def load_config(
    source: Mapping[str, Any] | str | os.PathLike[str] | None = None, *, prefix: str = ""
) -> dict[str, Any]:
    """Every configuration source as one canonical mapping of settings.

    ``source`` is a mapping (``{"BACKEND": "memory"}``, a Flask ``app.config``)
    or the path of a TOML, INI or JSON file (see :func:`read_config_file`).
    With ``prefix`` (``"NOTIFYCORE_"`` in a Flask config) only the keys that
    start with it are read, without it; the others belong to someone else.
    Setting names are upper-cased; ``hubs`` and ``listeners`` become the
    ``HUBS`` and ``LISTENERS`` tables, from nested tables or from Kinto's flat
    keys (``listeners = a b``, ``listeners.a.use = ...``). Nothing is
    validated here but the shape: :class:`Settings` checks names and types.
    """
    if source is None:
        return {}
    if isinstance(source, (str, os.PathLike)):
        if prefix:
            raise ConfigurationError("a key prefix applies to a mapping, not to a file")
        return read_config_file(source)
    if not isinstance(source, Mapping):
        raise ConfigurationError(
            f"configuration must be a mapping or a file path, not {type(source).__name__}"
        )
    if prefix:
        source = {k[len(prefix) :]: v for k, v in source.items() if str(k).startswith(prefix)}
    return _canonical(source, "configuration")


def _canonical(data: Mapping[Any, Any], where: str) -> dict[str, Any]:
    """Upper-case setting names and gather hub and listener declarations into two tables."""
    out: dict[str, Any] = {}
    tables: dict[str, dict[str, dict[str, Any]]] = {"HUBS": {}, "LISTENERS": {}}
    enabled: dict[str, list[str]] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigurationError(f"{where}: setting names are strings, not {key!r}")
        head, dot, rest = key.partition(".")
        table = head.upper()
        if table not in tables:
            if dot:
                raise ConfigurationError(
                    f"{where}: unknown key {key!r}; dotted keys are hubs.<label>.<key> "
                    "or listeners.<name>.<key>"
                )
            out[key.upper()] = value
            continue
        lower = table.lower()
        if dot:  # Kinto's flat form: listeners.<name>.<key> = value
            name, dot, option = rest.rpartition(".")
            if not dot or not name or not option:
                raise ConfigurationError(
                    f"{where}: {key!r} must be {lower}.<name>.<key> (for example "
                    f"{lower}.{rest or 'name'}.{'use' if lower == 'listeners' else 'filter'})"
                )
            tables[table].setdefault(name, {})[option] = value
        elif isinstance(value, Mapping):
            for name, options in value.items():
                if not isinstance(options, Mapping):
                    raise ConfigurationError(
                        f"{where}: {lower}.{name} must be a table of keys, "
                        f"not {type(options).__name__}"
                    )
                tables[table].setdefault(str(name), {}).update(options)
        elif isinstance(value, (str, list, tuple)):  # the names in use: listeners = a b
            enabled[table] = _names(value, lower, where)
        elif value is not None:
            raise ConfigurationError(
                f"{where}: {lower} must be a table of {lower}, or a list of names, "
                f"not {type(value).__name__}"
            )
    for table, declared in tables.items():
        lower = table.lower()
        if table in enabled:
            names = enabled[table]
            for name in declared:
                if name not in names:
                    message = f"{where}: {lower}.{name} is declared but not in {lower} = ..."
                    close = difflib.get_close_matches(name, names, n=1)
                    if close:
                        message += f"; did you mean {close[0]!r}?"
                    raise ConfigurationError(message)
            for name in names:
                if name not in declared:
                    hint = "use = ..." if lower == "listeners" else "filter = ..."
                    raise ConfigurationError(
                        f"{where}: {lower} lists {name!r} but nothing declares it "
                        f"({lower}.{name}.{hint})"
                    )
        if declared or table in enabled:
            out[table] = declared
    return out


def _names(value: str | list[Any] | tuple[Any, ...], what: str, where: str) -> list[str]:
    try:
        return split_names(value)
    except ValueError as exc:
        raise ConfigurationError(
            f"{where}: {what} must name strings, not {exc.args[0]!r}"
        ) from None


#: Values read from INI files are strings; these suffixes mark the file types.
_INI_SUFFIXES = (".ini", ".cfg", ".conf")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Settings, hubs and listeners from a TOML, INI or JSON file, canonical as :func:`load_config`.

    TOML and JSON: top-level keys, or the keys of a ``notifycore`` table, with
    ``[hubs.<label>]`` and ``[listeners.<name>]`` tables. INI: the
    ``[notifycore]`` section, ``[hubs.<label>]`` and ``[listeners.<name>]``
    sections, and ``notifycore.``-prefixed keys in any other section (Kinto's
    ``[app:main]`` style). INI values are strings, converted to each setting's
    type when validated.
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
        if suffix in _INI_SUFFIXES:
            return _canonical(_read_ini(name, raw.decode()), name)
        data = json.loads(raw) if suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"{name}: not valid {suffix.lstrip('.') or 'TOML'}: {_parse_error(exc)}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{name}: the configuration must be a table of settings")
    table = data.get("notifycore", data)
    if not isinstance(table, dict):
        raise ConfigurationError(f"{name}: 'notifycore' must be a table of settings")
    return _canonical(table, name)


def _parse_error(exc: Exception) -> str:
    """What a parser said, less the lines it quotes (a password may be on one)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):  # a ParsingError: first
        return f"line {exc.lineno}: a key before any [section]"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(number) for number, _ in exc.errors)
        return f"cannot parse line {lines}"
    return str(exc)


def _read_ini(name: str, text: str) -> dict[str, Any]:
    # No DEFAULT section: its keys would leak into every hub and listener.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep listener names' case
    parser.read_string(text)
    found: dict[str, Any] = {}
    seen = False
    for section in parser.sections():
        items = dict(parser.items(section))
        head, dot, rest = section.partition(".")
        if section == "notifycore":
            seen = True
            found.update(items)
        elif dot and head in ("hubs", "listeners") and rest:
            seen = True  # the flat form, so that a names list in [notifycore] can sit beside it
            found.update({f"{section}.{key}": value for key, value in items.items()})
        else:
            for key, value in items.items():
                if key.startswith("notifycore."):
                    seen = True
                    found[key[len("notifycore.") :]] = value
    if not seen:
        raise ConfigurationError(
            f"{name}: no [notifycore] section (nor [hubs.*], [listeners.*] or notifycore.* keys)"
        )
    return found
