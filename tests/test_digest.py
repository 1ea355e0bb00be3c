"""Digests (notifycore.digest): windows, unread-awareness, firing through the queue, restarts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from notifycore import ConfigurationError, DigestConsumer, Event, JobOutcome, Notifications
from notifycore.digest import DIGEST_TYPE, FLUSH_TYPE
from notifycore.testing import wait_for

Make = Callable[..., Notifications]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Notifications on one SQLite file (each call: another process's view of it)."""
    made: list[Notifications] = []

    def build(**config: Any) -> Notifications:
        config = {
            "BACKEND": "sqlite",
            "BACKEND_URL": f"sqlite:///{tmp_path / 'digest.db'}",
            "INBOX": "on",
            "RETRY_BACKOFF": 0.1,
            **config,
        }
        found = Notifications(config=config, environ={})
        made.append(found)
        return found

    yield build
    for found in made:
        found.close()


def with_digest(notifications: Notifications, got: list[Event], **window: Any) -> DigestConsumer:
    hub = notifications.create_hub("Comments")
    digest = DigestConsumer(got.append, notifications, **(window or {"every": 3600}))
    hub.register_consumer(digest, name="digest")
    return digest


def send(notifications: Notifications, title: str, *users: str, sender: str = "bob") -> Event:
    event = Event(None, "comment", title, sender=sender, recipients=list(users))
    notifications.send(event)
    return event


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_the_window_fires_one_digest_per_user_listing_their_events(make: Make) -> None:
    notifications = make()
    got: list[Event] = []
    with_digest(notifications, got, every=1, grace=0.2)
    first = send(notifications, "First", "alice")
    send(notifications, "Second", "alice", "bob", sender="carol")
    notifications.start_worker()
    wait_for(lambda: len(got) == 2, 30, "a digest for alice and one for bob")
    by_user = {d.recipients[0]: d for d in got}
    alice = by_user["alice"]
    assert alice.event_type == DIGEST_TYPE
    assert alice.title == "2 unread notifications"
    assert alice.body == "- First (bob)\n- Second (carol)"
    assert alice.sender == "notifycore"
    assert alice["digest"]["count"] == 2
    assert [i["title"] for i in alice["digest"]["items"]] == ["First", "Second"]
    assert alice["digest"]["items"][0]["id"] == first.event_id
    assert by_user["bob"].body == "- Second (carol)"
    assert by_user["bob"].recipients == ("bob",)


def test_items_read_before_the_digest_fires_are_left_out(make: Make) -> None:
    notifications = make()
    got: list[Event] = []
    digest = with_digest(notifications, got)
    events = [send(notifications, title, "alice") for title in ("One", "Two", "Three")]
    inbox = notifications.inbox("alice")
    inbox.mark_read([events[1].event_id])
    inbox.archive([events[2].event_id])
    notifications.start_worker()
    assert digest.fire_now("alice")
    wait_for(lambda: bool(got), 30, "alice's digest")
    (only,) = got
    assert only.title == "1 unread notifications"
    assert [i["title"] for i in only["digest"]["items"]] == ["One"]


def test_a_digest_with_nothing_unread_is_not_sent(make: Make) -> None:
    notifications = make()
    got: list[Event] = []
    digest = with_digest(notifications, got)
    send(notifications, "Seen", "alice")
    send(notifications, "Seen too", "alice")
    notifications.inbox("alice").mark_all_read()
    worker = notifications.start_worker()
    assert digest.fire_now("alice")
    # The job fired now is done (the window's own job waits for the hour).
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 1, 30, "the firing job")
    assert got == []
    # That window is over: a later event opens another, with only itself in it.
    send(notifications, "Later", "alice")
    assert digest.fire_now("alice")
    wait_for(lambda: bool(got), 30, "the next digest")
    assert [i["title"] for i in got[0]["digest"]["items"]] == ["Later"]


def test_a_window_waits_in_the_backend_through_a_restart(make: Make) -> None:
    # One process collects and stops; another, started later, fires the window.
    before: list[Event] = []
    first = make()
    with_digest(first, before, every=2, grace=0.2)
    send(first, "Kept across the restart", "alice")
    first.close()
    after: list[Event] = []
    second = make()
    with_digest(second, after, every=2, grace=0.2)
    second.start_worker()
    wait_for(lambda: bool(after), 30, "the digest after the restart")
    assert before == []
    assert after[0].body == "- Kept across the restart (bob)"


def test_a_failing_delivery_is_retried_and_a_duplicate_job_sends_nothing_more(make: Make) -> None:
    notifications = make()
    got: list[Event] = []
    tries: list[int] = []

    def flaky(event: Event) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("the mail server is down")
        got.append(event)

    hub = notifications.create_hub("Comments")
    digest = DigestConsumer(flaky, notifications, every=3600)
    hub.register_consumer(digest, name="digest")
    send(notifications, "Retried", "alice")
    # Two firing jobs for one window (the window's own waits for the hour): one digest.
    assert digest.fire_now("alice")
    assert digest.fire_now("alice")
    worker = notifications.start_worker()
    wait_for(lambda: bool(got), 30, "the digest on the second try")
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 2, 30, "both firing jobs")
    assert worker.counts[JobOutcome.RETRY] == 1
    assert len(tries) == 2
    assert len(got) == 1
    assert not digest.fire_now("alice")  # that window is over


def test_the_same_event_delivered_twice_is_listed_once(make: Make) -> None:
    notifications = make()
    got: list[Event] = []
    digest = with_digest(notifications, got)
    event = send(notifications, "Twice", "alice")
    notifications.send(event)  # a retried send: the same event id
    assert digest.fire_now("alice")
    notifications.start_worker()
    wait_for(lambda: bool(got), 30, "the digest")
    assert got[0]["digest"]["count"] == 1


def test_a_forged_firing_event_fires_nothing(make: Make) -> None:
    notifications = make()
    got: list[Event] = []
    digest = with_digest(notifications, got)
    send(notifications, "Private", "alice")
    # Anyone who can send events could send this one: without the window's secret it is ignored.
    forged = Event(
        None,
        FLUSH_TYPE,
        sender="notifycore",
        recipients=["alice"],
        digest_flush={"window": "0", "nonce": "guess"},
    )
    notifications.send(forged)
    assert got == []
    assert digest.fire_now("alice")
    notifications.start_worker()
    wait_for(lambda: bool(got), 30, "the real digest")
    assert [i["title"] for i in got[0]["digest"]["items"]] == ["Private"]


def test_a_user_who_turned_the_digest_off_gets_none(make: Make) -> None:
    notifications = make()
    got: list[Event] = []
    digest = with_digest(notifications, got)
    notifications.set_preferences("alice", {"*": {"digest": False}})
    send(notifications, "Not for the digest", "alice", "bob")
    assert not digest.fire_now("alice")  # nothing was collected for her
    assert digest.fire_now("bob")
    notifications.start_worker()
    wait_for(lambda: bool(got), 30, "bob's digest")
    assert [d.recipients for d in got] == [("bob",)]


def test_periods_are_aligned_on_the_epoch(make: Make) -> None:
    digest = DigestConsumer(lambda e: None, make(), every=3600)
    assert digest.fire_time("alice", stamp("2026-06-01T10:15:00+00:00")) == stamp(
        "2026-06-01T11:00:00+00:00"
    )
    assert digest.fire_time("alice", stamp("2026-06-01T11:00:00+00:00")) == stamp(
        "2026-06-01T12:00:00+00:00"
    )


def test_a_daily_time_is_in_each_users_time_zone(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    zones = {"alice": "America/New_York", "bob": "Asia/Tokyo", "eve": "Mars/Olympus"}
    digest = DigestConsumer(lambda e: None, make(), daily_at="08:00", timezone=zones)
    noon = stamp("2026-06-01T12:00:00+00:00")
    # 12:00 UTC is 08:00 in New York (EDT): the next one is tomorrow's.
    assert digest.fire_time("alice", noon) == stamp("2026-06-02T08:00:00-04:00")
    assert digest.fire_time("bob", noon) == stamp("2026-06-02T08:00:00+09:00")
    assert digest.fire_time("alice", noon - 1) == noon
    # An unknown zone (or user) is UTC, said in the log.
    assert digest.fire_time("eve", noon) == stamp("2026-06-02T08:00:00+00:00")
    assert "Mars/Olympus" in caplog.text
    assert digest.fire_time("nobody", noon) == stamp("2026-06-02T08:00:00+00:00")


def test_a_daily_time_follows_daylight_saving_changes(make: Make) -> None:
    paris = DigestConsumer(lambda e: None, make(), daily_at="08:00", timezone="Europe/Paris")
    # Clocks go forward on 29 March 2026 in Paris: 08:00 is 07:00 UTC before, 06:00 after.
    saturday = paris.fire_time("alice", stamp("2026-03-28T05:00:00+00:00"))
    assert saturday == stamp("2026-03-28T07:00:00+00:00")
    assert paris.fire_time("alice", saturday) == stamp("2026-03-29T06:00:00+00:00")
    # 02:30 does not exist that Sunday in Paris: that day's digest fires once all the same.
    early = DigestConsumer(lambda e: None, make(), daily_at="02:30", timezone="Europe/Paris")
    sunday = early.fire_time("alice", stamp("2026-03-28T23:00:00+00:00"))
    assert stamp("2026-03-29T00:00:00+00:00") < sunday < stamp("2026-03-29T02:00:00+00:00")
    by_function = DigestConsumer(
        lambda e: None,
        make(),
        daily_at="08:00",
        timezone=lambda user: "Asia/Tokyo" if user == "bob" else None,
    )
    noon = stamp("2026-06-01T12:00:00+00:00")
    assert by_function.fire_time("bob", noon) == stamp("2026-06-02T08:00:00+09:00")
    assert by_function.fire_time("alice", noon) == stamp("2026-06-02T08:00:00+00:00")
    assert datetime.fromtimestamp(noon, UTC).hour == 12


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({}, "exactly one window"),
        ({"every": 60, "daily_at": "08:00"}, "exactly one window"),
        ({"every": 0}, "at least one second"),
        ({"every": float("nan")}, "at least one second"),
        ({"daily_at": "8h"}, "HH:MM"),
        ({"daily_at": "25:00"}, "HH:MM"),
        ({"daily_at": "08:00", "timezone": "Nowhere/Town"}, "unknown time zone"),
        ({"every": 60, "max_listed": 0}, "max_listed"),
        ({"every": 60, "title": "{count} new for {user}"}, "over {count} only"),
    ],
)
def test_a_bad_window_is_a_configuration_error(
    make: Make, window: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DigestConsumer(lambda e: None, make(), **window)


def test_fire_now_without_an_open_window_says_so(make: Make) -> None:
    notifications = make()
    digest = with_digest(notifications, [])
    assert not digest.fire_now("alice")
    unregistered = DigestConsumer(lambda e: None, notifications, every=60)
    with pytest.raises(ConfigurationError, match="not registered"):
        unregistered.fire_now("alice")


def test_an_async_consumer_is_awaited_and_the_window_done_only_after_it(make: Make) -> None:
    notifications = make()
    got: list[Event] = []

    async def deliver(event: Event) -> None:
        got.append(event)

    hub = notifications.create_hub("Comments")
    digest = DigestConsumer(deliver, notifications, every=3600, title="{count} for you")
    hub.register_consumer(digest, name="digest", mode="queued")
    send(notifications, "Awaited", "alice")
    worker = notifications.start_worker()
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 1, 30, "the collecting job")
    assert digest.fire_now("alice")
    wait_for(lambda: bool(got), 30, "the digest")
    assert got[0].title == "1 for you"
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 2, 30, "the firing job")
    assert not digest.fire_now("alice")  # done: the window is closed
