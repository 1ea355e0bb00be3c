"""The plugin module: declares the Redis settings."""

from __future__ import annotations

from collections.abc import Callable

from notifycore import Setting, hookimpl

DEFAULT_URL = "redis://127.0.0.1:6379/0"

SETTINGS = (
    Setting(
        "REDIS_URL",
        str,
        DEFAULT_URL,
        "The Redis server (redis:// or rediss:// URL).",
        secret=True,
    ),
    Setting("REDIS_PREFIX", str, "notifycore:", "Prefix of every key notifycore writes in Redis."),
    Setting(
        "REDIS_RETRIES",
        int,
        3,
        "Tries of a command after a connection error before BackendUnavailable is raised.",
    ),
)


@hookimpl
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    for setting in SETTINGS:
        register(setting)
