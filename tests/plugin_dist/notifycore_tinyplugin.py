"""A tiny third-party plugin: a setting, a hook, a backend and a consumer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notifycore import Consumer, Event, Setting, hookimpl
from notifycore.backends.memory import MemoryBackend

#: Event ids seen by the after_send hook, for the tests to read.
SENT: list[str] = []


@hookimpl
def notifycore_register_settings(register: Callable[[Setting], None]) -> None:
    register(Setting("TINY_GREETING", str, "hello", "What the tiny backend says."))


@hookimpl
def notifycore_after_send(notifications: Any, event: Event, result: Any) -> None:
    SENT.append(event.event_id)


class TinyBackend(MemoryBackend):
    name = "tiny"
    greeting: str = ""

    @classmethod
    def from_settings(cls, settings: Any) -> TinyBackend:
        backend = cls()
        backend.greeting = settings["TINY_GREETING"]
        return backend


class ShoutConsumer(Consumer):
    def __init__(self) -> None:
        self.heard: list[str] = []

    def consume(self, event: Event) -> None:
        self.heard.append(event.title.upper())
