"""notifycore: send events, filter them through hubs, deliver them to consumers.

The public names are re-exported here; ``tests/test_exported_members.py``
keeps ``__all__`` honest.
"""

from notifycore.backends.base import Backend, DeadLetter, Job, StreamMessage, StreamRead
from notifycore.config import load_config
from notifycore.consumers import Consumer, FunctionConsumer, LogConsumer, PushConsumer, user_stream
from notifycore.digest import DigestConsumer
from notifycore.errors import (
    BackendError,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
    ConsumerError,
    ConsumerTimeout,
    InvalidEvent,
    InvalidFilter,
    InvalidInboxRequest,
    InvalidJob,
    InvalidPreferences,
    InvalidStreamId,
    NotifycoreError,
    PermanentFailure,
    UnknownDriver,
    UnknownHub,
)
from notifycore.event import Event
from notifycore.hookspecs import hookimpl
from notifycore.hub import Hub, Registration
from notifycore.inbox import Inbox, InboxItem
from notifycore.listeners import ListenerConfig
from notifycore.notifications import Notifications
from notifycore.result import ConsumerOutcome, SendResult, Status
from notifycore.settings import Setting, Settings
from notifycore.worker import JobOutcome, Worker

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "CommandError",
    "ConfigurationError",
    "Consumer",
    "ConsumerError",
    "ConsumerOutcome",
    "ConsumerTimeout",
    "DeadLetter",
    "DigestConsumer",
    "Event",
    "FunctionConsumer",
    "Hub",
    "Inbox",
    "InboxItem",
    "InvalidEvent",
    "InvalidFilter",
    "InvalidInboxRequest",
    "InvalidJob",
    "InvalidPreferences",
    "InvalidStreamId",
    "Job",
    "JobOutcome",
    "ListenerConfig",
    "LogConsumer",
    "Notifications",
    "NotifycoreError",
    "PermanentFailure",
    "PushConsumer",
    "Registration",
    "SendResult",
    "Setting",
    "Settings",
    "Status",
    "StreamMessage",
    "StreamRead",
    "UnknownDriver",
    "UnknownHub",
    "Worker",
    "__version__",
    "hookimpl",
    "load_config",
    "user_stream",
]
