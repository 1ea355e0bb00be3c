"""Flask-Notifications' own test suite, case by case, through notifycore's compatibility names.

The original (inveniosoftware/flask-notifications, ``tests/test_events.py``)
builds a Flask app with Celery and Redis, an event for the user ``jvican``
that expires tomorrow, and checks: the JSON round trip, the Flask-Mail
consumer, the push consumer, the log consumer, registering and
deregistering consumers on a hub, and the ``&``, ``|`` and ``^`` filter
algebra. Each test below checks the same behaviour the way docs/migrating.md
says it is written with notifycore; where notifycore behaves differently on
purpose, the test asserts notifycore's behaviour and the difference is listed
in docs/migrating.md ("Differences found by the original test suite"). Celery
tasks become queued consumers run by a worker, Redis the memory backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from notify_flask import current_notifications
from notify_mail.flask_mail import FlaskMailConsumer
from notify_mail.testing import SMTPServer
from notifycore import (
    ConfigurationError,
    Event,
    InvalidEvent,
    LogConsumer,
    Notifications,
    PushConsumer,
    Worker,
    user_stream,
)
from notifycore.filters import (
    AfterDate,
    BeforeDate,
    Expired,
    Not,
    WithEventType,
    WithId,
    WithRecipients,
    WithSender,
)

# Each test runs with the JSON accelerator (orjson) and without it.
pytestmark = pytest.mark.usefixtures("json_paths")

EMAIL = "invnotifications@example.org"

#: The original app.config, less the BACKEND that named Flask-Notifications' own class.
ORIGINAL_CONFIG = {
    "DEBUG": True,
    "TESTING": True,
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/0",
    "BROKER_TRANSPORT": "redis",
    "CELERY_ACCEPT_CONTENT": ["application/json"],
    "CELERY_TASK_SERIALIZER": "json",
    "CELERY_RESULT_SERIALIZER": "json",
    "CELERY_ALWAYS_EAGER": True,
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


class Dates:
    """The original's time variables, timezone-aware (notifycore refuses naive datetimes)."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.tomorrow = now + timedelta(days=1)
        self.next_to_tomorrow = now + timedelta(days=2)
        self.next_to_next_to_tomorrow = now + timedelta(days=3)


@pytest.fixture
def dates() -> Dates:
    return Dates()


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(ORIGINAL_CONFIG, BACKEND="memory")
    return app


@pytest.fixture
def notifications(app: Flask) -> Iterator[Notifications]:
    # Was Notifications(app=app, celery=celery, broker=redis).
    notifications = Notifications(app)
    yield notifications
    notifications.close()


@pytest.fixture
def event(dates: Dates) -> Event:
    return Event(
        "1234",
        event_type="user",
        title="This is a test",
        body="This is the body of a test",
        sender="system",
        recipients=["jvican"],
        expiration_datetime=dates.tomorrow,
    )


# -- setUp ---------------------------------------------------------------------------------


def test_the_extension_binds_to_the_app_and_ignores_the_celery_settings(
    app: Flask, notifications: Notifications
) -> None:
    assert app.extensions["notifications"] is notifications
    with app.app_context():
        assert current_notifications.backend is notifications.backend
    # create_backend() is gone: the one backend the BACKEND setting chose.
    assert type(notifications.backend).__name__ == "MemoryBackend"
    assert notifications.settings["REDIS_URL"] == ORIGINAL_CONFIG["REDIS_URL"]


def test_the_original_backend_path_must_be_replaced() -> None:
    app = Flask(__name__)
    app.config.update(BACKEND="flask_notifications.backend.redis_backend.RedisBackend")
    with pytest.raises(ConfigurationError, match="cannot import 'flask_notifications.backend"):
        Notifications(app)


def test_naive_datetimes_of_the_original_are_refused() -> None:
    with pytest.raises(InvalidEvent, match="expiration_datetime: must be timezone-aware"):
        Event("1234", "user", "t", "b", expiration_datetime=datetime.now() + timedelta(days=1))


# -- EventsTest ----------------------------------------------------------------------------


def test_json_parser(event: Event) -> None:
    parsed = Event.from_json(event.to_json())
    assert parsed["event_id"] == event["event_id"] == "1234"
    assert parsed["title"] == event["title"]
    assert parsed["body"] == event["body"]
    # Every field survives, the expiration date included (no HTTP-date parsing to override).
    assert dict(parsed) == dict(event)
    assert parsed.expiration_datetime == event.expiration_datetime


# -- FlaskMailNotificationTest ---------------------------------------------------------------


def test_email_delivery(app: Flask, notifications: Notifications, event: Event) -> None:
    # setUp: as in the original, from_app sets Flask-Mail up itself (no Mail(app) first).
    flaskmail = FlaskMailConsumer.from_app(app, EMAIL, [EMAIL])
    with app.test_request_context():
        email_consumer = flaskmail
        # Testing only the synchronous execution, not async
        with flaskmail.mail.record_messages() as outbox:
            email_consumer(event.to_json())  # send email
            expected = f"Event {event['event_id']}"
            assert len(outbox) == 1
            assert outbox[0].subject == expected
            assert outbox[0].body == event.to_json()


def test_email_delivery_through_send_reaches_a_real_smtp_server(event: Event) -> None:
    """The same consumer on a hub, sent through notifications.send, to aiosmtpd on 127.0.0.1."""
    server = SMTPServer()
    server.start()
    try:
        app = Flask(__name__)
        app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, BACKEND="memory")
        notifications = Notifications(app)
        hub = notifications.create_hub("Mail")
        hub.register_consumer(FlaskMailConsumer.from_app(app, EMAIL, [EMAIL]), name="mail")
        result = notifications.send(event.to_json())  # was email_consumer(event_json)
        assert [(o.consumer, o.status.value) for o in result.outcomes] == [("mail", "ran")]
        server.wait_for(1)
        (message,) = server.handler.messages()
        assert message["Subject"] == f"Event {event['event_id']}"
        assert (message["From"], message["To"]) == (EMAIL, EMAIL)
        text = message.get_body(preferencelist=("plain",))
        assert text is not None and text.get_content().rstrip("\r\n") == event.to_json()
        notifications.close()
    finally:
        server.stop()


# -- PushNotificationTest ------------------------------------------------------------------


def test_push(notifications: Notifications, event: Event) -> None:
    hub = notifications.create_hub("TestPush")
    assert hub.hub_id == "event-hub-TestPush"
    hub.register_consumer(PushConsumer(per_recipient=True))  # was PushConsumer(redis, hub_id)
    public = event.replace(recipients=())
    # Was sse_notifier_for(hub_id); one subscription per stream, no subscribe message to skip.
    hub_stream = notifications.fanout.subscribe(hub.hub_id)
    own_stream = notifications.fanout.subscribe(user_stream("jvican"))
    try:
        notifications.send(public)
        notifications.send(event)
        batch = hub_stream.get(timeout=30)
        assert batch is not None
        assert batch.messages[0].data.decode("utf-8") == public.to_json()
        batch = own_stream.get(timeout=30)
        assert batch is not None
        assert [m.data.decode("utf-8") for m in batch.messages] == [event.to_json()]
    finally:
        hub_stream.close()
        own_stream.close()
    # Unlike a Redis pub/sub channel, the stream keeps it for readers who come later.
    history = notifications.backend.read(hub.hub_id)
    assert history.messages[0].data == public.to_json_bytes()


# -- LogNotificationTest -------------------------------------------------------------------


def test_log(tmp_path: Path, event: Event) -> None:
    filepath = tmp_path / "events.log"
    log_function = LogConsumer(filepath)
    log_function(event.to_json())  # was consume(event_json): consume() takes the Event itself
    log_function.close()
    with open(filepath) as f:
        written_line = f.readline()
    # One JSON line per event, newline-terminated (the original wrote no newline).
    assert written_line == event.to_json() + "\n"


# -- EventHubAndFiltersTest ----------------------------------------------------------------


def test_register_consumer(notifications: Notifications, tmp_path: Path) -> None:
    """Consumers register with a decorator or a call, and deregister."""
    event_hub = notifications.create_hub("TestFilters")  # was EventHub("TestFilters", celery)
    log = tmp_path / "events.log"

    @event_hub.register_consumer
    def write_to_file(event: Event) -> None:
        with open(log, "a") as f:
            f.write(event.to_json())

    push_consumer = PushConsumer()
    event_hub.register_consumer(push_consumer)

    assert event_hub.is_registered(push_consumer) is True
    assert event_hub.is_registered(write_to_file) is True

    # A second PushConsumer under the same name: refused, not silently ignored.
    repeated_push_consumer = PushConsumer()
    with pytest.raises(ConfigurationError, match="already has a consumer named"):
        event_hub.register_consumer(repeated_push_consumer)
    assert event_hub.is_registered(repeated_push_consumer) is False

    registered = list(event_hub.registered_consumers)
    assert registered == [write_to_file, push_consumer]
    assert len(list(filter(event_hub.is_registered, registered))) == 2

    for consumer in [write_to_file, push_consumer]:
        event_hub.deregister_consumer(consumer)

    assert len(event_hub.registered_consumers) == 0


def test_a_celery_task_consumer_becomes_a_queued_consumer(
    notifications: Notifications, event: Event, dates: Dates, tmp_path: Path
) -> None:
    """@register_consumer(celery_task_name=...) with CELERY_ALWAYS_EAGER, and task expiry."""
    hub = notifications.create_hub("TestTasks")
    log = tmp_path / "events.log"

    @hub.register_consumer(name="app.write_to_file", mode="queued")
    def write_to_file(event: Event) -> None:
        with open(log, "a") as f:
            f.write(event.to_json() + "\n")

    sent = notifications.send(event)
    assert [(o.consumer, o.status.value) for o in sent.outcomes] == [
        ("app.write_to_file", "enqueued")
    ]
    assert not log.exists()  # nothing ran inside send(): a worker runs it
    # The task's expires= was the event's expiration: an expired event never becomes a job.
    gone = event.replace(event_id="old", expiration_datetime=datetime.now(UTC) - timedelta(1))
    assert [o.status.value for o in notifications.send(gone).outcomes] == ["expired"]
    assert Worker(notifications).drain() == 1
    assert log.read_text() == event.to_json() + "\n"


def test_and_filters(event: Event) -> None:
    f1 = WithEventType("user")
    f2 = WithSender("system")
    f3 = WithRecipients(["jvican"])

    f1f2 = f1 & f2
    f1f2f3 = f1 & f2 & f3

    assert f1f2f3(event) is True

    # Events are immutable: each change of the original is a changed copy.
    assert f1(event) is True
    event = event.replace(event_type="info")
    assert f1(event) is False
    assert f1f2(event) is False
    assert f1f2f3(event) is False

    assert f2(event) is True
    event = event.replace(sender="antisystem")
    assert f2(event) is False
    assert f1f2f3(event) is False

    assert f3(event) is True
    event = event.replace(recipients=["johndoe"])
    assert f3(event) is False
    assert f1f2f3(event) is False


def test_or_filters(event: Event, dates: Dates) -> None:
    f1 = BeforeDate(dates.tomorrow)
    f2 = WithId("1234")
    f3 = Not(Expired())
    f1f2f3 = f1 | f2 | f3

    assert f1f2f3(event) is True

    assert f1(event) is True
    event = event.replace(timestamp=dates.next_to_tomorrow)  # was a float of seconds
    assert f1(event) is False
    assert f1f2f3(event) is True

    assert f2(event) is True
    event = event.replace(event_id="123")
    assert f2(event) is False
    assert f1f2f3(event) is True

    assert f3(event) is True
    event = event.replace(expiration_datetime=datetime.now(UTC))
    assert f3(event) is False
    assert f1f2f3(event) is False


def test_xor_filters(event: Event, dates: Dates) -> None:
    # f1 is false in the beginning
    f1 = AfterDate(dates.next_to_tomorrow)
    f2 = WithId("1234")
    f1f2 = f1 ^ f2

    assert f1f2(event) is True
    event = event.replace(timestamp=dates.next_to_next_to_tomorrow)
    assert f1f2(event) is False
    event = event.replace(event_id="123")
    assert f1f2(event) is True
    event = event.replace(timestamp=dates.next_to_tomorrow)
    assert f1f2(event) is False
