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
        "The Redis server: redis://, rediss:// or unix:// (one server), "
        "redis+cluster://host:port[,host:port...]/ (a Redis Cluster) or "
        "redis+sentinel://host:port[,host:port...]/<service_name>/<db> (the master "
        "Sentinel names); see docs/redis.md.",
        secret=True,
    ),
    Setting("REDIS_PREFIX", str, "notifycore:", "Prefix of every key notifycore writes in Redis."),
    Setting(
        "REDIS_RETRIES",
        int,
        3,
        "Tries of a command after a connection error before BackendUnavailable is raised.",
        minimum=0,
    ),
    Setting(
        "REDIS_WAIT_REPLICAS",
        int,
        0,
        "Replicas that must confirm each publish and enqueue (Redis WAIT) before it is "
        "acknowledged; 0 does not wait (a failover can lose the last writes acknowledged).",
        minimum=0,
    ),
    Setting(
        "REDIS_WAIT_TIMEOUT",
        float,
        1.0,
        "Seconds a publish or enqueue waits for REDIS_WAIT_REPLICAS replicas; fewer in time "
        "raise BackendUnavailable (ReplicationTimeout): the write is on the master only.",
        minimum=0.001,
    ),
)


@hookimpl
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    for setting in SETTINGS:
        register(setting)
