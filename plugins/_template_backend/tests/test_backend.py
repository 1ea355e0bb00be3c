"""The backend, installed: notifycore's whole contract suite, and notifycore running on it."""

from __future__ import annotations

from typing import Any

from notify_template_backend import TemplateBackend
from notifycore import Event, Notifications, Worker
from notifycore.drivers import BACKENDS, resolve
from notifycore.testing.contract import BackendContract

#: What a backend must implement; everything else is derived by notifycore.Backend.
PRIMITIVES = {"publish", "read", "last_id", "enqueue", "reserve", "ack", "browse"}


class TestTemplateBackendContract(BackendContract):
    """Every capability notifycore's backends offer, checked on this one."""

    def make_backend(self, **options: Any) -> TemplateBackend:
        return TemplateBackend(**options)


def test_it_implements_the_seven_primitives_and_nothing_else() -> None:
    own = {name for name, value in vars(TemplateBackend).items() if callable(value)}
    assert {name for name in own if not name.startswith("_")} == PRIMITIVES


def test_the_backend_is_a_named_driver() -> None:
    assert resolve(BACKENDS, "template") is TemplateBackend


def test_notifications_runs_on_it() -> None:
    notifications = Notifications(config={"BACKEND": "template"}, environ={})
    try:
        assert isinstance(notifications.backend, TemplateBackend)
        seen: list[str] = []
        hub = notifications.create_hub("Builds")
        hub.register_consumer(lambda event: seen.append(event.title), name="log", mode="queued")
        notifications.send(Event(None, "build", "Build finished", ""))
        worker = Worker(notifications)
        job = worker.reserve(block=5.0)
        assert job is not None
        worker.process(job)
        assert seen == ["Build finished"]
        assert notifications.backend.queue_length("notifycore") == 0
    finally:
        notifications.close()
