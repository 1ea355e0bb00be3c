"""The exceptions notifycore raises, all below one root.

NotifycoreError
├── InvalidEvent            an event (or its JSON) that breaks a rule; ``.field`` names it
├── InvalidJob              a queued job's payload that can never run (it goes to the dead letters)
├── ConfigurationError      a bad setting, an unknown driver name, a duplicate hub or consumer
│   └── UnknownDriver       a backend or consumer name that no installed plugin provides
├── UnknownHub              no hub with that label or id (also a ``KeyError``)
├── ConsumerError           a consumer failed under the ``raise`` error policy
├── PermanentFailure        raised by a consumer: retrying cannot help, dead-letter the job now
├── ConsumerTimeout         a queued job's consumer ran past its time limit (also a ``TimeoutError``)
├── InvalidFilter           a filter dict that cannot be turned back into a filter
├── InvalidStreamId         a stream id (a browser's Last-Event-ID, say) the backend cannot read
├── InvalidPreferences      notification preferences of the wrong shape (docs/inbox.md)
├── InvalidInboxRequest     an inbox call with a bad id, cursor or limit (docs/inbox.md)
├── BackendError            the backend failed
│   └── BackendUnavailable  the broker cannot be reached (after the retries it allows)
└── CommandError            a ``notifycore`` command that cannot go on (printed as one line)

(``notifycore.web.Refusal`` is below the root too, but never leaves a web
route: ``WebProtocol.run`` turns it into the route's JSON error answer;
``notifycore.loop_thread.TimedOut`` never leaves the delivery layer, which
reports it as a ``ConsumerTimeout``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notifycore.result import SendResult

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "CommandError",
    "ConfigurationError",
    "ConsumerError",
    "ConsumerTimeout",
    "InvalidEvent",
    "InvalidFilter",
    "InvalidInboxRequest",
    "InvalidJob",
    "InvalidPreferences",
    "InvalidStreamId",
    "NotifycoreError",
    "PermanentFailure",
    "UnknownDriver",
    "UnknownHub",
]


class NotifycoreError(Exception):
    """Root of every exception notifycore raises on purpose."""


class InvalidEvent(NotifycoreError, ValueError):
    """An event that breaks a rule; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class InvalidJob(NotifycoreError, ValueError):
    """A job payload that cannot be run; the reason goes with it to the dead letters."""


class InvalidFilter(NotifycoreError, ValueError):
    """A filter definition (usually a dict from configuration) that is not valid."""


class InvalidStreamId(NotifycoreError, ValueError):
    """A stream id that is not of the backend's form."""


class InvalidPreferences(NotifycoreError, ValueError):
    """Notification preferences that are not ``{topic: {channel: true|false}}`` within the limits."""


class InvalidInboxRequest(NotifycoreError, ValueError):
    """An inbox call with a bad item id, cursor or limit."""


class ConfigurationError(NotifycoreError):
    """A setting, name or registration that cannot work."""


class UnknownDriver(ConfigurationError):
    """A driver name that no installed plugin provides; lists what is installed."""

    def __init__(
        self,
        namespace: str,
        name: str,
        available: Sequence[str],
        suggestions: Sequence[str],
        distribution: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.available = tuple(available)
        self.suggestions = tuple(suggestions)
        #: The first-party distribution that provides ``name``, when it is one (not installed).
        self.distribution = distribution
        installed = ", ".join(self.available) or "none"
        if distribution is not None:
            message = (
                f"The {namespace} driver {name!r} comes with the {distribution} distribution, "
                f"which is not installed: pip install {_quoted(distribution)} "
                f"(installed: {installed})."
            )
        else:
            message = f"No such {namespace} driver: {name!r} (installed: {installed})."
            if self.suggestions:
                message += f" Did you mean {self.suggestions[0]!r}?"
        super().__init__(message)


def _quoted(requirement: str) -> str:
    """A requirement as a shell needs it: extras in brackets are quoted."""
    return f"'{requirement}'" if "[" in requirement else requirement


class UnknownHub(NotifycoreError, KeyError):
    """No hub with that label or id."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"no hub named {self.name!r}"


class ConsumerError(NotifycoreError):
    """Raised by ``send()`` under the ``raise`` error policy once every consumer ran."""

    def __init__(self, errors: Sequence[BaseException], result: SendResult) -> None:
        self.errors = tuple(errors)
        self.result = result
        failed = ", ".join(f"{o.hub}/{o.consumer}" for o in result.failed)
        super().__init__(f"{len(self.errors)} consumer(s) failed: {failed}")


class PermanentFailure(NotifycoreError):
    """Raise from a consumer when retrying cannot help (a refused address, a bad header).

    A worker moves the job to the dead letters at once, with this message,
    instead of retrying it.
    """


class ConsumerTimeout(NotifycoreError, TimeoutError):
    """A queued job's consumer did not finish within its time limit.

    A worker counts it as a failed try (retried, then dead-lettered, like any
    error); ``seconds`` is the limit (``JOB_TIMEOUT`` or ``register_consumer(timeout=...)``).
    """

    def __init__(self, consumer: str, hub: str, seconds: float) -> None:
        self.consumer = consumer
        self.hub = hub
        self.seconds = seconds
        super().__init__(f"consumer {consumer!r} of hub {hub!r} timed out after {seconds:g} s")


class BackendError(NotifycoreError):
    """The backend could not do what was asked."""


class BackendUnavailable(BackendError):
    """The broker cannot be reached."""


class CommandError(NotifycoreError):
    """A ``notifycore`` command that cannot go on; printed as one line (exit status 1)."""
