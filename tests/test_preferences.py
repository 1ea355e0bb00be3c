"""Preferences: per user, topic and channel, enforced before a consumer runs or a job is queued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifycore import (
    ConfigurationError,
    Event,
    InvalidPreferences,
    Notifications,
    PushConsumer,
    Status,
    hookimpl,
    user_stream,
)
from notifycore.jobs import decode_job
from notifycore.preferences import MAX_ENTRIES, allows, check_preferences, is_critical


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    made = Notifications(config={"BACKEND": "memory", "INBOX": "on"}, environ={})
    hub = made.create_hub("comments")
    hub.register_consumer(PushConsumer(), name="push")
    hub.register_consumer(lambda event: None, name="mail", mode="queued", queue="mail")
    yield made
    made.close()


def queued(notifications: Notifications) -> list[Event]:
    return [decode_job(j.payload).event for j in notifications.backend.browse("mail")]


def pushed(notifications: Notifications, user: str) -> list[str]:
    read = notifications.backend.read(user_stream(user))
    return [json.loads(m.data)["title"] for m in read.messages if b'"inbox.' not in m.data]


def test_an_opted_out_users_mail_is_never_enqueued(notifications: Notifications) -> None:
    notifications.set_preferences("bob", {"comment.created": {"mail": False}})
    result = notifications.send(Event(None, "comment.created", "hi", recipients=["bob"]))
    assert result.outcome("comments", "mail").status is Status.OPTED_OUT
    assert result.outcome("comments", "push").status is Status.RAN
    assert queued(notifications) == []  # checked on the queue itself
    assert pushed(notifications, "bob") == ["hi"]
    assert notifications.inbox("bob").unread_count() == 1  # the inbox is its own channel


def test_a_job_carries_only_the_recipients_who_want_it(notifications: Notifications) -> None:
    notifications.set_preferences("bob", {"*": {"mail": False}})
    notifications.set_preferences("carol", {"comment.created": {"push": False}})
    event = Event(None, "comment.created", "hi", recipients=["alice", "bob", "carol"])
    notifications.send(event)
    (job,) = queued(notifications)
    assert job.recipients == ("alice", "carol") and job.event_id == event.event_id
    assert pushed(notifications, "alice") == ["hi"] and pushed(notifications, "bob") == ["hi"]
    assert pushed(notifications, "carol") == []


def test_the_most_specific_entry_wins_then_the_defaults() -> None:
    user = {"*": {"*": False}, "hub:comments": {"mail": True}, "comment.created": {"push": True}}
    defaults = {"*": {"sms": False}}

    def on(event_type: str, channel: str, hub: str | None = "comments") -> bool:
        return allows(user, defaults, event_type=event_type, hub=hub, channel=channel)

    assert on("comment.created", "push") and on("comment.created", "mail")
    assert not on("comment.created", "sms") and not on("other", "push", "elsewhere")
    assert on("other", "mail") and not on("other", "mail", None)
    assert allows({}, defaults, event_type="x", hub=None, channel="push")
    assert not allows({}, defaults, event_type="x", hub=None, channel="sms")
    assert not allows(
        {"x": {"*": False}}, {"x": {"push": True}}, event_type="x", hub=None, channel="push"
    )


def test_application_defaults_apply_until_a_user_says_otherwise() -> None:
    config = {
        "BACKEND": "memory",
        "INBOX": "on",
        "PREFERENCE_DEFAULTS": {"digest": {"mail": False}},
    }
    notifications = Notifications(config=config, environ={})
    try:
        hub = notifications.create_hub("all")
        hub.register_consumer(lambda event: None, name="mail", mode="queued", queue="mail")
        notifications.send(Event(None, "digest", "a", recipients=["alice", "bob"]))
        assert queued(notifications) == []
        notifications.set_preferences("bob", {"digest": {"mail": True}})
        notifications.send(Event(None, "digest", "b", recipients=["alice", "bob"]))
        assert [e.recipients for e in queued(notifications)] == [("bob",)]
    finally:
        notifications.close()
    with pytest.raises(ConfigurationError, match="PREFERENCE_DEFAULTS"):
        Notifications(
            config={
                "BACKEND": "memory",
                "INBOX": "on",
                "PREFERENCE_DEFAULTS": {"x": {"mail": "no"}},
            },
            environ={},
        )


def test_critical_events_bypass_preferences(notifications: Notifications) -> None:
    notifications.set_preferences("bob", {"*": {"*": False}})
    notifications.send(Event(None, "comment.created", "quiet", recipients=["bob"]))
    assert queued(notifications) == [] and pushed(notifications, "bob") == []
    assert notifications.inbox("bob").unread_count() == 0  # the inbox channel is off too
    notifications.send(Event(None, "security.alert", "loud", recipients=["bob"], critical=True))
    assert [e.title for e in queued(notifications)] == ["loud"]
    assert pushed(notifications, "bob") == ["loud"]
    assert notifications.inbox("bob").unread_count() == 1


def test_only_a_critical_field_that_is_true_makes_an_event_critical() -> None:
    assert is_critical(Event(None, "t", critical=True))
    for value in (False, "true", 1, None, [True], {"critical": True}):
        assert not is_critical(Event(None, "t", critical=value)), value
    assert not is_critical(Event(None, "t"))
    assert not is_critical(Event(None, "t", other={"critical": True}))


def test_preferences_round_trip_and_bad_ones_are_refused(notifications: Notifications) -> None:
    assert notifications.preferences("alice") == {}
    saved = notifications.set_preferences("alice", {"hub:comments": {"mail": False}})
    assert notifications.preferences("alice") == saved == {"hub:comments": {"mail": False}}
    bad: Any
    for bad in (
        [],
        {"x": True},
        {"x": {"mail": 1}},
        {"": {"mail": True}},
        {"x": {"": True}},
        {"x" * 201: {"mail": True}},
        {"x\n": {"mail": True}},
        {"\ud800": {"mail": True}},
        {"t": {f"c{n}": True for n in range(MAX_ENTRIES + 1)}},
    ):
        with pytest.raises(InvalidPreferences):
            notifications.set_preferences("alice", bad)
    assert notifications.preferences("alice") == saved  # nothing lost


class AppStore:
    """An application keeping preferences in its own database (a dict here)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {"bob": {"*": {"mail": False}}}

    @hookimpl
    def notifycore_load_preferences(self, user: str) -> dict[str, Any] | None:
        return self.rows.get(user)

    @hookimpl
    def notifycore_save_preferences(self, user: str, preferences: dict[str, Any]) -> bool:
        self.rows[user] = preferences
        return True


def test_the_application_can_keep_preferences_in_its_own_database(
    notifications: Notifications,
) -> None:
    store = AppStore()
    notifications.plugins.register(store, name="app-preferences")
    try:
        notifications.send(Event(None, "comment.created", "hi", recipients=["alice", "bob"]))
        assert [e.recipients for e in queued(notifications)] == [("alice",)]
        notifications.set_preferences("alice", {"*": {"push": False}})
        assert store.rows["alice"] == {"*": {"push": False}}
        assert notifications.centre.store.kv_get("nc:preferences:alice") is None
        assert notifications.preferences("alice") == {"*": {"push": False}}
    finally:
        notifications.plugins.unregister(name="app-preferences")


names = st.text(min_size=0, max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_any_json_is_either_preferences_or_a_clear_refusal(value: Any) -> None:
    try:
        checked = check_preferences(value)
    except InvalidPreferences as exc:
        assert str(exc)
        return
    assert check_preferences(json.loads(json.dumps(checked))) == checked
    for channels in checked.values():
        assert all(isinstance(on, bool) for on in channels.values())


def test_a_hub_topic_turns_the_inbox_off_when_every_matching_hub_does() -> None:
    made = Notifications(config={"BACKEND": "memory", "INBOX": "on"}, environ={})
    try:
        made.create_hub("comments").register_consumer(PushConsumer(), name="push")
        everything = made.create_hub("everything")
        made.set_preferences("bob", {"hub:comments": {"inbox": False}})
        # "everything" also matches and bob kept its inbox on: kept (one hub wanting it is enough).
        made.send(Event(None, "comment.created", "x", recipients=["bob"]))
        assert made.inbox("bob").unread_count() == 1
        made.set_preferences(
            "bob", {"hub:comments": {"inbox": False}, "hub:everything": {"*": False}}
        )
        made.send(Event(None, "comment.created", "y", recipients=["bob"]))
        assert made.inbox("bob").unread_count() == 1
        # The event type's own entry decides for every hub.
        made.set_preferences(
            "bob", {"hub:comments": {"inbox": False}, "comment.created": {"inbox": True}}
        )
        made.send(Event(None, "comment.created", "z", recipients=["bob"]))
        assert made.inbox("bob").unread_count() == 2
        made.remove_hub(everything.label)
        made.set_preferences("carol", {"hub:comments": {"inbox": False, "push": False}})
        made.send(Event(None, "comment.created", "w", recipients=["carol"]))
        assert made.inbox("carol").unread_count() == 0
        assert pushed(made, "carol") == []
    finally:
        made.close()


def test_topics_without_channels_count_towards_the_limit() -> None:
    with pytest.raises(InvalidPreferences, match="at most"):
        check_preferences({f"t{n}": {} for n in range(MAX_ENTRIES + 1)})
    assert len(check_preferences({f"t{n}": {} for n in range(MAX_ENTRIES)})) == MAX_ENTRIES


@pytest.mark.parametrize("name", ["inbox", "*"])
def test_a_consumer_may_not_take_a_name_preferences_give_another_meaning(name: str) -> None:
    made = Notifications(config={"BACKEND": "memory"}, environ={})
    try:
        hub = made.create_hub("comments")
        with pytest.raises(ConfigurationError, match="reserved"):
            hub.register_consumer(lambda event: None, name=name)
        assert hub.registrations == ()
    finally:
        made.close()
