"""The template consumer: writes one line per event, prefixed by a setting."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Mapping
from typing import Any, Self, TextIO

from notifycore import Consumer, Event


class TemplateConsumer(Consumer):
    """Writes ``<prefix><event type>: <title>`` for each event and keeps the last lines.

    Register it inline for quick output, or ``mode="queued"`` to have a worker
    run it with retries.
    """

    #: The name a hub knows it by unless the registration gives another.
    name = "template"

    def __init__(
        self, prefix: str = "[template] ", *, max_lines: int = 1000, out: TextIO | None = None
    ) -> None:
        self.prefix = prefix
        self.out = out
        self.lines: deque[str] = deque(maxlen=max_lines)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], **options: Any) -> Self:
        """Build it from validated settings (``notifications.settings``)."""
        return cls(settings["TEMPLATE_PREFIX"], max_lines=settings["TEMPLATE_MAX_LINES"], **options)

    def consume(self, event: Event) -> None:
        line = f"{self.prefix}{event.event_type}: {event.title}"
        self.lines.append(line)
        print(line, file=self.out or sys.stdout, flush=True)
