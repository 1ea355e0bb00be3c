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
    run it with retries. Build it with :meth:`from_settings` so that the
    ``TEMPLATE_*`` settings apply: notifycore does the same for a listener
    declared with ``use = "template"``.
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
        """Build it from validated settings (``notifications.settings``); ``options`` win.

        Every way of choosing the consumer comes here: code, and a listener
        declared in a configuration file by entry-point name (``use =
        "template"``) or by path, whose own keys (``prefix = ">> "``) are the
        ``options``.
        """
        options.setdefault("prefix", settings["TEMPLATE_PREFIX"])
        options.setdefault("max_lines", settings["TEMPLATE_MAX_LINES"])
        return cls(**options)

    def __repr__(self) -> str:
        return f"TemplateConsumer(prefix={self.prefix!r}, max_lines={self.lines.maxlen})"

    def consume(self, event: Event) -> None:
        line = f"{self.prefix}{event.event_type}: {event.title}"
        self.lines.append(line)
        print(line, file=self.out or sys.stdout, flush=True)
