"""What ``send()`` returns: the hubs that matched and what happened to each consumer."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notifycore.event import Event

__all__ = ["ConsumerOutcome", "SendResult", "Status"]


class Status(enum.StrEnum):
    """What happened to one consumer for one event."""

    RAN = "ran"
    ENQUEUED = "enqueued"
    FAILED = "failed"
    EXPIRED = "expired"
    FILTERED = "filtered"
    #: Every recipient turned this channel off for the event (docs/inbox.md, preferences).
    OPTED_OUT = "opted_out"


@dataclass(slots=True)
class ConsumerOutcome:
    """One consumer of one hub: its status, and the error or job id when there is one."""

    hub: str
    consumer: str
    status: Status
    error: BaseException | None = None
    job_id: str | None = None


@dataclass(slots=True)
class SendResult:
    """The hubs whose filter the event passed, and one outcome per consumer of those hubs."""

    event: Event
    hubs: list[str] = field(default_factory=list)
    outcomes: list[ConsumerOutcome] = field(default_factory=list)
    expired: bool = False

    def with_status(self, status: Status) -> list[ConsumerOutcome]:
        return [o for o in self.outcomes if o.status is status]

    @property
    def failed(self) -> list[ConsumerOutcome]:
        return self.with_status(Status.FAILED)

    @property
    def ok(self) -> bool:
        """True when no consumer failed."""
        return not any(o.status is Status.FAILED for o in self.outcomes)

    def outcome(self, hub: str, consumer: str) -> ConsumerOutcome:
        """The outcome of ``consumer`` on hub ``hub`` (a label); ``KeyError`` if none."""
        for o in self.outcomes:
            if o.hub == hub and o.consumer == consumer:
                return o
        raise KeyError((hub, consumer))
