"""notify-redis: the Redis backend for notifycore (``BACKEND = "redis"``)."""

from notify_redis.backend import RedisBackend

__all__ = ["RedisBackend"]
