"""Kinto's asynchronous listener tutorial on notifycore: a Redis-backed queue and a worker script."""
