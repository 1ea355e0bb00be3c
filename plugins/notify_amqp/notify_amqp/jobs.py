"""How a job travels in RabbitMQ: a persistent JSON message whose headers carry its state.

``message_id`` is the job's id; ``x-nc-attempts`` the tries it had before this
message (the quorum queue's ``x-delivery-count`` adds the deliveries lost to
crashes); ``x-nc-error`` its last error; ``x-nc-not-before`` when a delayed job
may run; ``x-nc-failed-at`` when a dead letter failed.
"""

from __future__ import annotations

from typing import Any

import amqp

__all__ = ["ACCEPT", "ATTEMPTS", "ERROR", "FAILED_AT", "NOT_BEFORE", "job_message"]

#: Payload types a job may have; anything else is dead-lettered unread, never unpickled.
ACCEPT = ("application/json", "")
ATTEMPTS = "x-nc-attempts"
ERROR = "x-nc-error"
NOT_BEFORE = "x-nc-not-before"
FAILED_AT = "x-nc-failed-at"


def job_message(
    job_id: str, payload: bytes, attempts: int, *, error: str | None = None
) -> amqp.Message:
    """A job's message: persistent, JSON, with the tries it had so far and its last error."""
    headers: dict[str, Any] = {ATTEMPTS: attempts}
    if error is not None:
        headers[ERROR] = error
    return amqp.Message(
        payload,
        message_id=job_id,
        delivery_mode=2,
        content_type="application/json",
        application_headers=headers,
    )
