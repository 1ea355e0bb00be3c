"""Digest mail: DigestConsumer around SMTPConsumer, a real SMTP server (aiosmtpd), SQLite and Redis.

A user's events within a window become one message listing those still unread;
nothing unread, no message; a window survives a restart of the worker (its
items and its firing job are in the backend); a delivery the SMTP server
refuses is retried until it is accepted.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notify_mail import SMTPConsumer
from notify_mail.testing import SMTPServer
from notify_redis.testing import RedisServer
from notifycore import DigestConsumer, Event, JobOutcome, Notifications
from notifycore.testing import wait_for

ADDRESSES = {"alice": "alice@example.org", "bob": "bob@example.org"}
Make = Callable[[], Notifications]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Notifications on one store: each call is another process's view of the same backend."""
    if request.param == "sqlite":
        config = {"BACKEND": "sqlite", "BACKEND_URL": f"sqlite:///{tmp_path / 'digest.db'}"}
    else:
        server = request.getfixturevalue("redis_server")
        prefix = f"digest-{uuid.uuid4().hex[:8]}:"
        config = {"BACKEND": "redis", "BACKEND_URL": server.url, "REDIS_PREFIX": prefix}
    made: list[Notifications] = []

    def build() -> Notifications:
        found = Notifications(config={**config, "INBOX": "on", "RETRY_BACKOFF": 0.2}, environ={})
        made.append(found)
        return found

    yield build
    for found in made:
        found.close()


def mail_digest(notifications: Notifications, port: int, **window: Any) -> DigestConsumer:
    mail = SMTPConsumer(
        "127.0.0.1", port, timeout=5, sender="noreply@example.org", resolver=ADDRESSES
    )
    digest = DigestConsumer(mail, notifications, **(window or {"every": 3600}))
    notifications.create_hub("Comments").register_consumer(
        digest, name="mail.digest", mode="queued"
    )
    return digest


def texts(server: SMTPServer) -> list[tuple[str, str, str]]:
    found = []
    for message in server.handler.messages():
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        found.append(
            (message["To"], message["Subject"], body.get_content().replace("\r\n", "\n").strip())
        )
    return found


def send(notifications: Notifications, title: str, *users: str) -> Event:
    event = Event(None, "comment", title, sender="carol", recipients=list(users))
    notifications.send(event)
    return event


def test_one_message_per_user_lists_only_what_is_still_unread(
    make: Make, smtp_server: SMTPServer
) -> None:
    notifications = make()
    digest = mail_digest(notifications, smtp_server.port)
    worker = notifications.start_worker()
    events = [send(notifications, title, "alice") for title in ("Alpha", "Beta", "Gamma")]
    send(notifications, "For bob", "bob")
    # The events reach the digest through the queue: wait until the worker kept all four.
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 4, 30, "the four collecting jobs")
    notifications.inbox("alice").mark_read([events[1].event_id])
    assert digest.fire_now("alice")
    assert digest.fire_now("bob")
    smtp_server.wait_for(2, 30)
    assert sorted(texts(smtp_server)) == [
        ("alice@example.org", "2 unread notifications", "- Alpha (carol)\n- Gamma (carol)"),
        ("bob@example.org", "1 unread notifications", "- For bob (carol)"),
    ]


def test_nothing_unread_sends_no_mail(make: Make, smtp_server: SMTPServer) -> None:
    notifications = make()
    digest = mail_digest(notifications, smtp_server.port)
    send(notifications, "Read already", "alice")
    send(notifications, "Read too", "alice")
    worker = notifications.start_worker()
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 2, 30, "the collecting jobs")
    notifications.inbox("alice").mark_all_read()
    assert digest.fire_now("alice")
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 3, 30, "the firing job")
    # Then one for bob: once it is in, alice's would have been before it. There is none.
    send(notifications, "Bob's", "bob")
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 4, 30, "bob's collecting job")
    assert digest.fire_now("bob")
    smtp_server.wait_for(1, 30)
    assert [to for to, _, _ in texts(smtp_server)] == ["bob@example.org"]


def test_the_window_fires_by_itself_after_a_worker_restart(
    make: Make, smtp_server: SMTPServer
) -> None:
    first = make()
    mail_digest(first, smtp_server.port, every=2, grace=0.2)
    worker = first.start_worker()
    send(first, "Before the restart", "alice")
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 1, 30, "the collecting job")
    first.close()  # the worker stops; the window and its firing job stay in the backend
    second = make()
    mail_digest(second, smtp_server.port, every=2, grace=0.2)
    second.start_worker()
    smtp_server.wait_for(1, 30)
    assert texts(smtp_server) == [
        ("alice@example.org", "1 unread notifications", "- Before the restart (carol)")
    ]


def test_a_digest_the_server_refused_is_retried_until_it_is_accepted(make: Make) -> None:
    down = SMTPServer()  # a port nobody listens on yet
    notifications = make()
    digest = mail_digest(notifications, down.port)
    worker = notifications.start_worker()
    send(notifications, "Delivered late", "alice")
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 1, 30, "the collecting job")
    assert digest.fire_now("alice")
    wait_for(lambda: worker.counts[JobOutcome.RETRY] >= 1, 30, "a refused try")
    down.start()
    try:
        down.wait_for(1, 30)
        wait_for(lambda: worker.counts[JobOutcome.DONE] == 2, 30, "the firing job done")
        assert [subject for _, subject, _ in texts(down)] == ["1 unread notifications"]
    finally:
        down.stop()
