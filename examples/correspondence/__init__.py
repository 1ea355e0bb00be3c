"""django-redis-pubsub's correspondence example on notifycore: conversations, live per-user streams."""
