"""Settings: declared keys with types and defaults, validated in one place.

Keys are declared through the ``notifycore_register_settings`` hook, so a
plugin's own keys (``REDIS_URL``...) are validated like the core's
(:data:`CORE_SETTINGS`); :func:`collect_settings` gathers every declaration.
:class:`Settings` validates the canonical mapping that
:func:`~notifycore.config.load_config` made of a configuration source and lays
``NOTIFYCORE_<KEY>`` environment variables over it: the environment wins.
:func:`parse_text` is how text (from an INI file or the environment) becomes a
typed value, for settings and for listeners' own keys alike.

Secrets (a setting declared ``secret=True``, the password in any URL, a
``password``/``token``/``secret`` key in a table) are shown as ``***`` in
every repr and error this module makes; :func:`redact` does the same for
anyone else printing a value.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from notifycore import drivers
from notifycore.errors import ConfigurationError
from notifycore.event import DEFAULT_MAX_EVENT_DEPTH, DEFAULT_MAX_EVENT_SIZE, EVENT_DEPTH_CEILING

if TYPE_CHECKING:
    from notifycore.plugins import Plugins

__all__ = [
    "CORE_SETTINGS",
    "DEFAULT_BACKEND",
    "ENV_PREFIX",
    "MASK",
    "Setting",
    "Settings",
    "collect_settings",
    "mask_url",
    "parse_text",
    "redact",
    "split_names",
]

ENV_PREFIX = "NOTIFYCORE_"
#: Environment variables with the prefix that are not settings.
_NOT_SETTINGS = frozenset(
    {
        "NOTIFYCORE_DISABLE_PLUGINS",
        "NOTIFYCORE_LOAD_PLUGINS",
        "NOTIFYCORE_APP",
        "NOTIFYCORE_CONFIG",
        "NOTIFYCORE_PROGRESS_EVERY",
        "NOTIFYCORE_VENV",  # where scripts/test and scripts/demo make the virtualenv
        "NOTIFYCORE_JSON_ACCELERATOR",  # 0 leaves orjson unused (notifycore.event)
    }
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_text(text: str, kind: type) -> Any:
    """What ``text`` (from an INI file or the environment) means as ``kind``.

    ``bool`` takes true/false, yes/no, on/off or 1/0 (any case); ``int``,
    ``float`` and ``str`` the usual forms (surrounding blanks ignored);
    ``dict`` and ``list`` JSON. :class:`ValueError` when it means nothing.
    """
    if kind in (dict, list):
        return json.loads(text)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(text)
    return kind(text.strip())


def split_names(value: Any) -> list[str]:
    """Names as a list: a list of non-empty strings, or one string of names separated by
    spaces, commas or new lines (``"a, b c"``). :class:`ValueError` otherwise."""
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(item)
    return list(items)


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
        if self.type is bool and not text.strip():  # an empty variable: false
            return False
        try:
            return parse_text(text, self.type)
        except ValueError:
            if self.type in (dict, list):  # tables and lists come from the environment as JSON
                kind = "object" if self.type is dict else "array"
                raise ConfigurationError(
                    f"{self.name} (from {source}) must be a JSON {kind}, not {self.show(text)}"
                ) from None
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


#: The backend used when ``BACKEND`` is not set.
DEFAULT_BACKEND = "sqlite"

CORE_SETTINGS = (
    Setting(
        "BACKEND",
        str,
        DEFAULT_BACKEND,
        "Backend: an entry-point name (memory, sqlite, redis, amqp) or pkg.mod:Class.",
        allow_objects=True,
    ),
    Setting(
        "BACKEND_URL",
        str,
        None,
        "Where the backend's data lives; each backend documents its form.",
        nullable=True,
        secret=True,
    ),
    Setting(
        "MAX_EVENT_SIZE",
        int,
        DEFAULT_MAX_EVENT_SIZE,
        "Largest event, in bytes of JSON.",
        minimum=256,
    ),
    Setting(
        "MAX_EVENT_DEPTH",
        int,
        DEFAULT_MAX_EVENT_DEPTH,
        "Deepest nesting of lists and objects in one field of an event (`[1]` is 1, "
        '`{"a": [1]}` 2); deeper events are refused with InvalidEvent.',
        minimum=1,
        maximum=EVENT_DEPTH_CEILING,
    ),
    Setting(
        "CONSUMER_ERRORS",
        str,
        "log",
        "What send() does when a consumer raises: 'log' (and call the hook) or 'raise' (tests).",
        choices=("log", "raise"),
    ),
    Setting("STREAM_MAXLEN", int, 10_000, "Messages kept per stream for replay.", minimum=1),
    Setting(
        "STREAM_MAX_AGE",
        float,
        0.0,
        "Seconds a stream message is kept for replay; 0 keeps them by count only.",
        minimum=0,
    ),
    Setting(
        "DEFAULT_QUEUE", str, "notifycore", "Queue that queued consumers use unless they name one."
    ),
    Setting(
        "MAX_TRIES",
        int,
        5,
        "Deliveries of a queued job before it becomes a dead letter.",
        minimum=1,
    ),
    Setting(
        "RETRY_BACKOFF",
        float,
        1.0,
        "Seconds before the first retry, doubled on each further try.",
        minimum=0,
    ),
    Setting(
        "RETRY_BACKOFF_MAX", float, 300.0, "Longest wait between two tries, in seconds.", minimum=0
    ),
    Setting(
        "DEDUPE_TTL",
        float,
        7 * 24 * 3600.0,
        "Seconds a de-duplicating consumer remembers that it handled an event.",
        minimum=1,
    ),
    Setting(
        "VISIBILITY_TIMEOUT",
        float,
        60.0,
        "Seconds a reserved job stays hidden before another worker may take it.",
        minimum=0.1,
    ),
    Setting(
        "JOB_TIMEOUT",
        float,
        None,
        "Seconds a worker lets a queued consumer run on one job before the try counts as "
        "failed (ConsumerTimeout); unset: VISIBILITY_TIMEOUT, which it may not exceed.",
        nullable=True,
        minimum=0.001,
    ),
    Setting(
        "WORKER_GRACE_PERIOD",
        float,
        30.0,
        "Seconds a stopping worker (SIGTERM, stop_worker()) lets its jobs in flight finish; "
        "jobs still running then go back to the queue.",
        minimum=0,
    ),
    Setting(
        "INBOX",
        str,
        "off",
        "The notification centre (docs/inbox.md): keep every event delivered to a recipient "
        "in their inbox and enforce preferences. 'on' (a ConfigurationError when neither the "
        "backend nor INBOX_BACKEND can keep inboxes), 'auto' (on when one can), 'off'.",
        choices=("auto", "on", "off"),
    ),
    Setting(
        "INBOX_MAX_ITEMS",
        int,
        1000,
        "Items kept per user inbox; adding one more drops the oldest, whatever its state.",
        minimum=1,
    ),
    Setting(
        "INBOX_MAX_AGE",
        float,
        90 * 24 * 3600.0,
        "Seconds an inbox item is kept (checked when the user gets a new item); 0: no limit.",
        minimum=0,
    ),
    Setting(
        "INBOX_BACKEND",
        str,
        "",
        "A companion store for inboxes and preferences when BACKEND keeps none (RabbitMQ): "
        "'sqlite', 'redis' or 'memory'; empty: BACKEND itself.",
    ),
    Setting(
        "INBOX_BACKEND_URL",
        str,
        None,
        "Where INBOX_BACKEND keeps its data (a sqlite:/// or redis:// URL).",
        nullable=True,
        secret=True,
    ),
    Setting(
        "PREFERENCE_DEFAULTS",
        dict,
        None,
        "The application's default preferences, {topic: {channel: bool}} (docs/inbox.md); "
        "a user's own entries win.",
        nullable=True,
    ),
    Setting(
        "HUBS",
        dict,
        None,
        "Hubs to create: label -> {filter, listeners} (see docs/listeners.md).",
        nullable=True,
    ),
    Setting(
        "LISTENERS",
        dict,
        None,
        "Listeners to load: name -> {use, mode, queue, actions, resources, ...}.",
        nullable=True,
    ),
)


def collect_settings(plugins: Plugins) -> dict[str, Setting]:
    """Every setting declared by the registered plugins, by name."""
    declared: dict[str, Setting] = {}

    def register(setting: Setting) -> None:
        if not isinstance(setting, Setting):
            raise ConfigurationError(f"notifycore_register_settings got {setting!r}, not a Setting")
        if setting.name in declared and declared[setting.name] != setting:
            raise ConfigurationError(f"setting {setting.name!r} is declared twice, differently")
        declared[setting.name] = setting

    plugins.register_settings(register)
    return declared
