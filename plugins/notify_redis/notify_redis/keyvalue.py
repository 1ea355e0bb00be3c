"""Claims, the key-value store and counters on Redis (optional capabilities): Redis strings."""

from __future__ import annotations

from notify_redis.connection import RedisConnection
from notify_redis.keys import KeySpace

__all__ = ["RedisKeyValue"]


def _ms(ttl: float | None) -> int | None:
    return None if ttl is None else max(1, int(ttl * 1000))


class RedisKeyValue:
    """``kv_*`` of :class:`~notify_redis.backend.RedisBackend`: ``SET NX PX``, ``EXISTS``, ``GET``,
    ``DEL``, ``INCRBY``."""

    connection: RedisConnection
    keys: KeySpace

    def kv_get(self, key: str) -> bytes | None:
        with self.connection.calling("kv_get"):
            value = self.connection.client.get(self.keys.value(key))
        return None if value is None else bytes(value)

    def kv_exists(self, key: str) -> bool:
        with self.connection.calling("kv_exists"):
            return bool(self.connection.client.exists(self.keys.value(key)))

    def kv_set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"values are bytes, not {type(value).__name__}")
        with self.connection.calling("kv_set"):
            self.connection.client.set(self.keys.value(key), value, px=_ms(ttl))

    def kv_set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        if not isinstance(value, bytes):
            raise TypeError(f"values are bytes, not {type(value).__name__}")
        with self.connection.calling("kv_set_if_absent"):
            return bool(
                self.connection.client.set(self.keys.value(key), value, nx=True, px=_ms(ttl))
            )

    def kv_delete(self, key: str) -> bool:
        with self.connection.calling("kv_delete"):
            return bool(self.connection.client.delete(self.keys.value(key)))

    def kv_incr(self, key: str, amount: int = 1) -> int:
        name = self.keys.value(key)
        with self.connection.calling("kv_incr"):
            # A count keeps no ttl, as on every backend.
            replies = self.connection.execute(
                ("MULTI",), ("INCRBY", name, amount), ("PERSIST", name), ("EXEC",), key=name
            )
        return int(replies[-1][0])
