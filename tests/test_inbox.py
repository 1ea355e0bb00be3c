"""The inbox: kept on delivery to recipients, listed, counted, changed, and every change pushed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notifycore import (
    ConfigurationError,
    Event,
    InvalidEvent,
    InvalidInboxRequest,
    Notifications,
    PushConsumer,
    user_stream,
)
from notifycore.backends.memory import MemoryBackend
from notifycore.inbox import ALL_READ, ITEM_ADDED, ITEMS_ARCHIVED, ITEMS_READ
from notifycore.testing.inbox import check_unread_count_across_processes


class NoInboxes(MemoryBackend):
    """A backend that keeps no inboxes (as RabbitMQ): its inbox methods are hidden."""

    inbox_add = inbox_list = inbox_get = inbox_unread = None  # type: ignore[assignment]
    inbox_mark_read = inbox_mark_all_read = inbox_archive = None  # type: ignore[assignment]


@pytest.fixture(params=["memory", "sqlite"])
def notifications(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Notifications]:
    config: dict[str, Any] = {"BACKEND": request.param, "INBOX": "on"}
    if request.param == "sqlite":
        config["BACKEND_URL"] = f"sqlite:///{tmp_path / 'nc.db'}"
    made = Notifications(config=config, environ={})
    hub = made.create_hub("comments")
    hub.register_consumer(PushConsumer(), name="push")
    yield made
    made.close()


def changes(notifications: Notifications, user: str) -> list[dict[str, Any]]:
    """The inbox changes pushed on ``user``'s stream, oldest first."""
    read = notifications.backend.read(user_stream(user))
    events = [json.loads(m.data) for m in read.messages]
    return [e for e in events if e["event_type"].startswith("inbox.")]


def send(notifications: Notifications, title: str, *recipients: str, **extra: Any) -> Event:
    event = Event(None, "comment.created", title, "", recipients=list(recipients), **extra)
    notifications.send(event)
    return event


def test_an_event_is_kept_in_each_recipients_inbox_newest_first(
    notifications: Notifications,
) -> None:
    first = send(notifications, "one", "alice", "bob")
    second = send(notifications, "two", "alice")
    alice, bob = notifications.inbox("alice"), notifications.inbox("bob")
    assert alice.unread_count() == 2 and bob.unread_count() == 1
    items = alice.list()
    assert [i.id for i in items] == [second.event_id, first.event_id]
    assert [i.event.title for i in items] == ["two", "one"]
    assert all(i.state == "unread" and i.unread for i in items)
    assert items[0].to_dict()["event"]["title"] == "two"
    assert [i.id for i in bob.list()] == [first.event_id]
    assert notifications.inbox("carol").list() == []
    assert notifications.inbox("carol").unread_count() == 0


def test_what_is_not_delivered_to_a_recipient_is_not_kept(notifications: Notifications) -> None:
    send(notifications, "public")  # no recipients
    send(notifications, "gone", "alice", expiration_datetime="2000-01-01T00:00:00+00:00")
    notifications.remove_hub("comments")
    send(notifications, "no hub", "alice")  # no hub matched: delivered to no one
    assert notifications.inbox("alice").list() == []


def test_the_same_event_sent_twice_is_one_item(notifications: Notifications) -> None:
    event = send(notifications, "once", "alice")
    notifications.send(event)
    assert [i.id for i in notifications.inbox("alice").list()] == [event.event_id]
    assert notifications.inbox("alice").unread_count() == 1


def test_pages_follow_the_cursor(notifications: Notifications) -> None:
    sent = [send(notifications, f"n{n}", "alice").event_id for n in range(7)]
    inbox = notifications.inbox("alice")
    page = inbox.list(limit=3)
    seen = [i.id for i in page]
    while page:
        page = inbox.list(before=page[-1].cursor, limit=3)
        seen += [i.id for i in page]
    assert seen == sent[::-1]


def test_read_all_read_and_archive_change_the_count_and_are_pushed(
    notifications: Notifications,
) -> None:
    events = [send(notifications, f"n{n}", "alice") for n in range(5)]
    inbox = notifications.inbox("alice")
    added = changes(notifications, "alice")
    assert [c["event_type"] for c in added] == [ITEM_ADDED] * 5
    assert [c["inbox"]["unread"] for c in added] == [1, 2, 3, 4, 5]
    assert added[0]["inbox"]["item"]["event"]["title"] == "n0"
    assert added[0]["recipients"] == ["alice"]

    change = inbox.mark_read([events[0].event_id, events[1].event_id])
    assert change.unread == 3 and inbox.unread_count() == 3
    assert not inbox.is_unread(events[0].event_id) and inbox.is_unread(events[2].event_id)
    assert inbox.mark_read(events[0].event_id).count == 0  # already read: nothing pushed
    change = inbox.archive([events[2].event_id])
    assert change.unread == 2
    assert inbox.states([e.event_id for e in events] + ["unknown"]) == {
        events[0].event_id: "read",
        events[1].event_id: "read",
        events[2].event_id: "archived",
        events[3].event_id: "unread",
        events[4].event_id: "unread",
    }
    assert [i.id for i in inbox.list(archived=True)] == [events[2].event_id]
    assert events[2].event_id not in [i.id for i in inbox.list()]
    cursor = inbox.get(events[3].event_id)
    assert cursor is not None
    assert inbox.mark_all_read(up_to=cursor.cursor).count == 1
    assert inbox.is_unread(events[4].event_id)
    assert inbox.mark_all_read().unread == 0
    assert inbox.mark_all_read().count == 0

    pushed = [(c["event_type"], c["inbox"]) for c in changes(notifications, "alice")[5:]]
    assert pushed == [
        (ITEMS_READ, {"ids": [events[0].event_id, events[1].event_id], "unread": 3}),
        (ITEMS_ARCHIVED, {"ids": [events[2].event_id], "unread": 2}),
        (ALL_READ, {"up_to": cursor.cursor, "count": 1, "unread": 1}),
        (ALL_READ, {"up_to": None, "count": 1, "unread": 0}),
    ]
    assert changes(notifications, "bob") == []  # one user's changes stay on their stream


def test_bad_calls_are_clear_errors(notifications: Notifications) -> None:
    send(notifications, "x", "alice")
    inbox = notifications.inbox("alice")
    for bad in (
        lambda: inbox.list(limit=0),
        lambda: inbox.list(limit=201),
        lambda: inbox.list(before="abc"),
        lambda: inbox.list(before="-1"),
        lambda: inbox.mark_read([""]),
        lambda: inbox.mark_read([1]),  # type: ignore[list-item]
        lambda: inbox.mark_all_read(up_to="x"),
        lambda: inbox.archive(["x" * 600]),
        lambda: notifications.inbox(""),
        lambda: notifications.inbox(None),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidInboxRequest):
            bad()
    assert inbox.unread_count() == 1  # nothing lost


def test_retention_keeps_the_newest_items(tmp_path: Path) -> None:
    notifications = Notifications(
        config={"BACKEND": "memory", "INBOX": "on", "INBOX_MAX_ITEMS": 3}, environ={}
    )
    try:
        notifications.create_hub("all")
        sent = [send(notifications, f"n{n}", "alice").event_id for n in range(5)]
        inbox = notifications.inbox("alice")
        assert [i.id for i in inbox.list()] == sent[:1:-1]
        assert inbox.unread_count() == 3
    finally:
        notifications.close()


def test_asend_keeps_items_too() -> None:
    notifications = Notifications(config={"BACKEND": "memory", "INBOX": "on"}, environ={})
    try:
        notifications.create_hub("all")
        event = Event(None, "x", "async", recipients=["alice"])
        asyncio.run(notifications.asend(event))
        assert notifications.inbox("alice").is_unread(event.event_id)
    finally:
        notifications.close()


def test_without_a_store_the_inbox_is_off_or_refused(tmp_path: Path) -> None:
    auto = Notifications(config={"BACKEND": NoInboxes(), "INBOX": "auto"}, environ={})
    try:
        auto.create_hub("all")
        send(auto, "still sent", "alice")  # sending works without inboxes
        with pytest.raises(ConfigurationError, match="INBOX_BACKEND"):
            auto.inbox("alice")
    finally:
        auto.close()
    with pytest.raises(ConfigurationError, match="INBOX is on, but"):
        Notifications(config={"BACKEND": NoInboxes(), "INBOX": "on"}, environ={})
    off = Notifications(config={"BACKEND": "memory", "INBOX": "off"}, environ={})
    try:
        off.create_hub("all")
        send(off, "not kept", "alice")
        with pytest.raises(ConfigurationError, match="INBOX is off"):
            off.inbox("alice")
        assert changes(off, "alice") == []
    finally:
        off.close()
    with pytest.raises(ConfigurationError, match="keeps no inboxes"):
        Notifications(
            config={
                "BACKEND": "memory",
                "INBOX": "on",
                "INBOX_BACKEND": "tests.test_inbox:NoInboxes",
            },
            environ={},
        )


def test_a_companion_store_keeps_inboxes_for_a_backend_that_cannot(tmp_path: Path) -> None:
    store = tmp_path / "inbox.db"
    config = {
        "BACKEND": NoInboxes(),
        "INBOX": "on",
        "INBOX_BACKEND": "sqlite",
        "INBOX_BACKEND_URL": f"sqlite:///{store}",
    }
    notifications = Notifications(config=config, environ={})
    try:
        notifications.create_hub("all")
        event = send(notifications, "kept", "alice")
        assert notifications.inbox("alice").is_unread(event.event_id)
        assert [c["event_type"] for c in changes(notifications, "alice")] == [ITEM_ADDED]
    finally:
        notifications.close()
    again = Notifications(config={**config, "BACKEND": NoInboxes()}, environ={})
    try:  # the companion is a file: another process (or a restart) sees the same inbox
        assert again.inbox("alice").unread_count() == 1
    finally:
        again.close()


def test_the_unread_count_stays_exact_with_several_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    check_unread_count_across_processes({"BACKEND": "sqlite", "BACKEND_URL": url, "INBOX": "on"})


def test_reserved_event_types_are_never_kept(notifications: Notifications) -> None:
    # Application code may send them (it is trusted), but they are no inbox items: an
    # inbox.* event is a change, a notifycore.* one notifycore's own plumbing.
    for event_type in ("inbox.item", "inbox.read", "notifycore.digest.flush", "notifycore.x"):
        notifications.send(Event(None, event_type, "forged", recipients=["alice"]))
    assert notifications.inbox("alice").list() == []
    assert notifications.inbox("alice").unread_count() == 0
    # No change was announced for them (what the push consumer relayed is the app's own).
    assert [c for c in changes(notifications, "alice") if "inbox" in c] == []


def test_any_recipient_an_event_accepts_is_kept_and_read_back() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    made = Notifications(config={"BACKEND": "memory", "INBOX": "on"}, environ={})
    made.create_hub("comments")

    def accepted(user: str) -> bool:
        try:
            Event(None, "x", recipients=[user])
        except InvalidEvent:
            return False
        return True

    users = st.text(
        st.characters(codec="utf-8") | st.sampled_from("\u00ad\u200b\u200d\u2028 {}"),
        min_size=1,
        max_size=20,
    ).filter(accepted)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(users)
    def check(user: str) -> None:
        before = made.inbox(user).unread_count()
        event = Event(None, "comment", "t", recipients=[user])
        made.send(event)
        assert made.inbox(user).unread_count() == before + 1
        assert made.inbox(user).states([event.event_id]) == {event.event_id: "unread"}
        made.set_preferences(user, {"*": {"mail": False}})
        assert made.preferences(user) == {"*": {"mail": False}}

    try:
        check()
        # And what it refuses, the inbox refuses with the same clear error, never another one.
        for bad in ("", " padded", "a\x00b", "x" * 257):
            assert not accepted(bad)
            with pytest.raises(InvalidInboxRequest):
                made.inbox(bad)
    finally:
        made.close()
