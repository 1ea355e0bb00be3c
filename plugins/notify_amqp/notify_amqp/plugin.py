"""The plugin module: declares the RabbitMQ settings."""

from __future__ import annotations

from collections.abc import Callable

from notifycore import Setting, hookimpl

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"

SETTINGS = (
    Setting(
        "AMQP_URL",
        str,
        DEFAULT_URL,
        "The RabbitMQ server (amqp:// or amqps:// URL), or a cluster's nodes: their URLs "
        "joined by ';' (kombu's failover form).",
        secret=True,
    ),
    Setting(
        "AMQP_PREFIX", str, "notifycore.", "Prefix of every queue and stream notifycore declares."
    ),
    Setting(
        "AMQP_PREFETCH",
        int,
        0,
        "Jobs each worker thread may hold from RabbitMQ beyond the one it runs "
        "(0: a worker's prefetch is its concurrency).",
        minimum=0,
    ),
    Setting(
        "AMQP_RETRIES",
        int,
        3,
        "Reconnections tried for one call after a connection error before "
        "BackendUnavailable is raised.",
        minimum=0,
    ),
    Setting(
        "AMQP_HEARTBEAT",
        int,
        20,
        "AMQP heartbeat interval in seconds (0: off). A thread of each process keeps "
        "heartbeats going while its workers run consumers or wait for jobs; RabbitMQ closes "
        "the connection of a process that went silent (frozen, paused, cut off) after two to "
        "three intervals and gives its jobs to other workers.",
        minimum=0,
    ),
    Setting(
        "AMQP_RECOVERY_WAIT",
        float,
        30.0,
        "Seconds a call waits, trying again with back-off, for a queue or stream that a "
        "restarted RabbitMQ node has not recovered yet (404 'home node ... is down or "
        "inaccessible') before it raises BackendUnavailable.",
        minimum=0.0,
    ),
    Setting(
        "AMQP_STREAM_MAX_BYTES",
        int,
        100_000_000,
        "Retention of each stream queue in bytes (x-max-length-bytes); RabbitMQ streams "
        "cannot keep a number of messages, so STREAM_MAXLEN does not apply.",
        minimum=1,
    ),
    Setting(
        "AMQP_STREAM_SEGMENT_BYTES",
        int,
        8_000_000,
        "Segment size of each stream queue (x-stream-max-segment-size-bytes); retention "
        "drops whole segments.",
        minimum=1,
    ),
    Setting(
        "AMQP_READ_QUIET",
        float,
        0.05,
        "Seconds without a delivery after which a stream read has reached the end "
        "(AMQP 0-9-1 does not say where a stream ends).",
        minimum=0.001,
    ),
)


@hookimpl
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    for setting in SETTINGS:
        register(setting)
