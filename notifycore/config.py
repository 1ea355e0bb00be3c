"""Settings: declared keys with types and defaults, read from one loader.

Keys are declared through the ``notifycore_register_settings`` hook, so a
plugin's own keys (``REDIS_URL``...) are validated like the core's.
:func:`load_config` turns every source (a mapping, a Flask config with an
optional key prefix, a TOML, INI or JSON file) into one canonical mapping;
:class:`Settings` validates it and lays ``NOTIFYCORE_<KEY>`` environment
variables over it: the environment wins.

Secrets (a setting declared ``secret=True``, the password in any URL, a
``password``/``token``/``secret`` key in a table) are shown as ``***`` in
every repr and error this module makes; :func:`redact` does the same for
anyone else printing a value.
"""

from __future__ import annotations

import configparser
import difflib
import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from notifycore import drivers
from notifycore.errors import ConfigurationError

__all__ = [
    "DECLARATION_KEYS",
    "ENV_PREFIX",
    "Setting",
    "Settings",
    "load_config",
    "mask_url",
    "read_config_file",
    "redact",
]

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
#: The settings that declare hubs and listeners (tables in files, dicts in a mapping).
DECLARATION_KEYS = ("HUBS", "LISTENERS")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

#: What a masked secret shows instead of its value.
MASK = "***"
# Where each URL starts; its userinfo runs to the last "@" before the next one.
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# ?password=... &sentinel_password=... &token=... in a query string.
_QUERY_SECRET = re.compile(
    r"([?&;][^=&;#\s]*(?:password|passwd|secret|token)[^=&;#\s]*=)[^&;#\s]*", re.IGNORECASE
)
# Keys of a table (a listener's options, say) whose values are secrets.
_SECRET_KEY = re.compile(
    r"(^|[_.-])pass(wd)?$|password|secret|token|api_?key|credential", re.IGNORECASE
)


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it (user part or query) as ``***``.

    A password may hold any character unencoded (``,`` ``;`` ``@``, a space),
    so a URL's userinfo is everything from its ``scheme://`` to the **last**
    ``@`` before the next ``scheme://`` (each URL of a kombu failover list
    ``a;b;c`` starts with one): the user is kept up to the first ``:``, the
    rest is masked. In doubt it masks too much, never too little.
    """
    if "://" not in text:
        return text
    pieces: list[str] = []
    done = 0
    starts = list(_URL_START.finditer(text))
    for number, start in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(text)
        at = text.rfind("@", start.end(), end)
        colon = text.find(":", start.end(), at) if at != -1 else -1
        if colon != -1:  # user:password@ (a user alone is no secret)
            pieces += (text[done : colon + 1], MASK)
            done = at
    text = "".join(pieces) + text[done:]
    return _QUERY_SECRET.sub(rf"\1{MASK}", text)


def redact(value: Any, *, secret: bool = False) -> Any:
    """``value`` fit to print: URL passwords masked, secret-looking keys of tables masked.

    With ``secret``, the whole value is a secret: a URL keeps all but its
    password, anything else (but ``None``) becomes ``***``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if secret and "://" not in value:
            return MASK
        return mask_url(value)
    if secret:
        return MASK
    if isinstance(value, Mapping):
        return {
            key: MASK
            if isinstance(key, str) and _SECRET_KEY.search(key) and item is not None
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact(item) for item in value)
    return value


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
    #: Largest number allowed (int and float settings).
    maximum: float | None = None
    #: A password, or a URL that may hold one: masked in reprs, errors and logs.
    secret: bool = False

    def show(self, value: Any) -> str:
        """``repr(value)`` fit for a message: masked when secret, never too long."""
        text = repr(redact(value, secret=self.secret))
        return text if len(text) <= 200 else text[:197] + "..."

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
                f"not {type(value).__name__}: {self.show(value)}"
            )
        if self.type in (int, float) and isinstance(value, (int, float)):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigurationError(f"{self.name} (from {source}) must be a finite number")
            if self.minimum is not None and value < self.minimum:
                raise ConfigurationError(
                    f"{self.name} (from {source}) must be at least {self.minimum:g}, "
                    f"not {self.show(value)}"
                )
            if self.maximum is not None and value > self.maximum:
                raise ConfigurationError(
                    f"{self.name} (from {source}) must be at most {self.maximum:g}, "
                    f"not {self.show(value)}"
                )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ConfigurationError(
                f"{self.name} (from {source}) must be one of {allowed}, not {self.show(value)}"
            )
        return value

    def _parse(self, text: str, source: str) -> Any:
        if self.type in (dict, list):  # tables and lists come from the environment as JSON
            try:
                return json.loads(text)
            except ValueError:
                kind = "object" if self.type is dict else "array"
                raise ConfigurationError(
                    f"{self.name} (from {source}) must be a JSON {kind}, not {self.show(text)}"
                ) from None
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
                f"{self.name} (from {source}) must be {self.type.__name__}, not {self.show(text)}"
            ) from None


class Settings(Mapping[str, Any]):
    """Validated settings: every declared key, with its default when not given."""

    def __init__(
        self,
        declared: Mapping[str, Setting],
        values: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        source: str = "configuration",
    ) -> None:
        self.declared = dict(declared)
        resolved = {name: s.default for name, s in self.declared.items()}
        env = os.environ if environ is None else environ
        # A missing backend plugin is the cause of its settings being unknown: report it first.
        self._backend = env.get(ENV_PREFIX + "BACKEND", (values or {}).get("BACKEND"))
        for key, value in (values or {}).items():
            resolved[key] = self._setting(key, source).convert(value, source)
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
            if isinstance(self._backend, str):
                drivers.check_installed(drivers.BACKENDS, self._backend.strip())
            message = f"unknown setting {key!r} (from {source})"
            distribution = drivers.setting_distribution(str(key))
            close = difflib.get_close_matches(str(key).upper(), self.declared, n=1)
            if distribution is not None:
                message += (
                    f": it is a setting of the {distribution} distribution, which is not "
                    f"installed (pip install {distribution})"
                )
            elif close:
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
        shown = {
            key: redact(value, secret=key in self.declared and self.declared[key].secret)
            for key, value in self._values.items()
        }
        return f"Settings({shown!r})"

    def __str__(self) -> str:
        return repr(self)


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
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"{where}: {what} must name strings, not {item!r}")
    return items


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
