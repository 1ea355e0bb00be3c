"""Hubs and listeners declared in configuration, loaded through Kinto's contract."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from notify_mail import SMTPConsumer
from notifycore import (
    ConfigurationError,
    Event,
    FunctionConsumer,
    ListenerConfig,
    LogConsumer,
    Notifications,
    PushConsumer,
    Status,
    Worker,
)
from notifycore.declarations import DEFAULT_HUB, parse_declarations
from notifycore.filters import Always, And, Field, WithEventType, WithTag

PACKAGE = {
    "__init__.py": "",
    "kinto_style.py": """
        from notifycore import Consumer

        class Recorder(Consumer):
            def __init__(self, url, tries):
                self.url, self.tries, self.seen = url, tries, []

            def consume(self, event):
                self.seen.append(event.title)

        def load_from_config(config, prefix):
            settings = config.get_settings()  # Kinto's spelling
            return Recorder(settings[prefix + "url"], int(settings.get(prefix + "tries", 1)))
    """,
    "classes.py": """
        from notifycore import Consumer

        SEEN = []

        class Plain(Consumer):
            def __init__(self, colour="blue"):
                self.colour, self.seen = colour, []

            def consume(self, event):
                self.seen.append(event.title)

        class WithLoader(Consumer):
            def __init__(self, size):
                self.size, self.seen = size, []

            @classmethod
            def load_from_config(cls, config, prefix):
                return cls(config.get_int(prefix + "size", 1, minimum=1))

            def consume(self, event):
                self.seen.append(event.title)

        class FromSettings(Consumer):
            def __init__(self, channel="none", *, size: int = 1, loud: bool = False):
                self.channel, self.size, self.loud = channel, size, loud

            @classmethod
            def from_settings(cls, settings, **options):
                options.setdefault("channel", settings["DEFAULT_QUEUE"])
                return cls(**options)

            def consume(self, event):
                pass

        def on_event(event):
            SEEN.append(event.title)

        def nothing(config, prefix):
            return None

        class ReturnsNone:
            load_from_config = staticmethod(nothing)

        class Takes:
            @classmethod
            def load_from_config(cls, config, prefix):
                return dict(config.options(prefix))
    """,
    "no_loader.py": "VALUE = 1\n",
    "broken.py": "import notifycore_module_that_is_not_installed\n",
}


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package of listeners importable as ``listener_pkg`` for this test only."""
    root = tmp_path / "site" / "listener_pkg"
    root.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (root / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root.parent))
    for name in [m for m in sys.modules if m.split(".")[0] == "listener_pkg"]:
        monkeypatch.delitem(sys.modules, name)
    yield "listener_pkg"
    for name in [m for m in sys.modules if m.split(".")[0] == "listener_pkg"]:
        del sys.modules[name]


Build = Callable[..., Notifications]


@pytest.fixture
def build() -> Iterator[Build]:
    made: list[Notifications] = []

    def make(
        listeners: dict[str, Any] | None = None, hubs: dict[str, Any] | None = None, **config: Any
    ) -> Notifications:
        config.setdefault("BACKEND", "memory")
        if listeners is not None:
            config["LISTENERS"] = listeners
        if hubs is not None:
            config["HUBS"] = hubs
        n = Notifications(config=config, environ={})
        made.append(n)
        return n

    yield make
    for n in made:
        n.close()


def consumer(n: Notifications, name: str, hub: str = DEFAULT_HUB) -> Any:
    return n.get_hub(hub).consumers[name]


# -- where a listener comes from --------------------------------------------------------------


def test_a_listener_by_entry_point_name(build: Build, tmp_path: Path) -> None:
    n = build(
        {
            "audit": {"use": "log", "path": str(tmp_path / "audit.jsonl"), "level": "debug"},
            "live": {"use": "push", "per_recipient": "true", "hub_stream": "off"},
            "shout": {"use": "shout"},  # a third-party class without load_from_config
        }
    )
    audit, live = consumer(n, "audit"), consumer(n, "live")
    assert isinstance(audit, LogConsumer) and audit.path == str(tmp_path / "audit.jsonl")
    assert audit.level == logging.DEBUG
    assert isinstance(live, PushConsumer) and (live.per_recipient, live.hub_stream) == (True, False)
    n.send(Event(None, "note", "hello", recipients=["ann"]))
    assert consumer(n, "shout").heard == ["HELLO"]
    assert json.loads((tmp_path / "audit.jsonl").read_text())["title"] == "hello"
    assert [m.id for m in n.backend.read("user:ann", "0").messages] == ["1"]
    assert n.backend.read(f"event-hub-{DEFAULT_HUB}", "0").messages == []


def test_a_consumer_class_is_built_by_from_settings_and_its_keys_win(
    build: Build, package: str
) -> None:
    """The one path by which settings reach a consumer, whether code or a listener picks it."""
    n = build(
        {
            "plain": {"use": f"{package}.classes:FromSettings"},
            "keyed": {
                "use": f"{package}.classes.FromSettings",
                "channel": "own",
                "size": "4",  # INI text, converted to the constructor's int and bool
                "loud": "yes",
            },
        },
        DEFAULT_QUEUE="mail",
    )
    plain, keyed = consumer(n, "plain"), consumer(n, "keyed")
    assert (plain.channel, plain.size, plain.loud) == ("mail", 1, False)
    assert (keyed.channel, keyed.size, keyed.loud) == ("own", 4, True)
    # The base class's from_settings is the constructor: a class without one works as before.
    assert consumer(
        build({"p": {"use": f"{package}.classes:Plain", "colour": "red"}}), "p"
    ).colour == ("red")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"sise": 2}, "listeners.x: unknown key 'sise'.*did you mean 'size'"),
        ({"size": "many"}, "listeners.x.size must be int, not 'many'"),
    ],
)
def test_a_from_settings_listeners_keys_are_checked(
    build: Build, package: str, keys: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build({"x": {"use": f"{package}.classes:FromSettings", **keys}})


def test_a_push_listener_is_private_by_default_and_may_broadcast(build: Build) -> None:
    n = build(
        {
            "default": {"use": "push"},
            "channel": {"use": "push", "per_recipient": "no", "broadcast_private": "yes"},
        }
    )
    default, channel = consumer(n, "default"), consumer(n, "channel")
    assert isinstance(default, PushConsumer) and isinstance(channel, PushConsumer)
    assert (default.per_recipient, default.hub_stream, default.broadcast_private) == (
        True,
        True,
        False,
    )
    assert (channel.per_recipient, channel.broadcast_private) == (False, True)


def test_a_listener_by_dotted_module_is_kintos_contract(build: Build, package: str) -> None:
    n = build({"rec": {"use": f"{package}.kinto_style", "url": "redis://x", "tries": "3"}})
    rec = consumer(n, "rec")
    assert (type(rec).__name__, rec.url, rec.tries) == ("Recorder", "redis://x", 3)
    n.send(Event(None, "t", "one"))
    assert rec.seen == ["one"]


@pytest.mark.parametrize("sep", [":", "."])
def test_a_listener_by_class_path(build: Build, package: str, sep: str) -> None:
    n = build(
        {
            "plain": {"use": f"{package}.classes{sep}Plain", "colour": "red"},
            "loader": {"use": f"{package}.classes{sep}WithLoader", "size": "4"},
            "func": {"use": f"{package}.classes{sep}on_event"},
            "named": {"use": "function", "function": f"{package}.classes:on_event"},
        }
    )
    assert consumer(n, "plain").colour == "red"
    assert consumer(n, "loader").size == 4
    assert isinstance(consumer(n, "named"), FunctionConsumer)
    n.send(Event(None, "t", "x"))
    assert consumer(n, "plain").seen == consumer(n, "loader").seen == ["x"]
    assert sys.modules[f"{package}.classes"].SEEN == ["x", "x"]


def test_the_mail_plugins_smtp_consumer_loads_from_config(build: Build) -> None:
    n = build(
        {
            "admin": {
                "use": "smtp",
                "port": "2525",
                "recipients": "admin@example.org",
                "subject": "New {event_type}",
            }
        },
        MAIL_SERVER="127.0.0.1",
        MAIL_DEFAULT_SENDER="bot@example.org",
    )
    smtp = consumer(n, "admin")
    assert isinstance(smtp, SMTPConsumer)
    assert (smtp.host, smtp.port, smtp.sender, smtp.recipients) == (
        "127.0.0.1",
        2525,
        "bot@example.org",
        ["admin@example.org"],
    )
    assert smtp.compose(Event(None, "record.created")).subject == "New record.created"


# -- where a listener fails to come from ------------------------------------------------------


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"use": "lgo"}, r"No such notifycore.consumers driver: 'lgo'.*Did you mean 'log'"),
        ({"use": "listener_pkg.no_such_module"}, "cannot import 'listener_pkg'|has no attribute"),
        (
            {"use": "listener_pkg.no_loader"},
            "module 'listener_pkg.no_loader' has no load_from_config",
        ),
        ({"use": "listener_pkg.broken"}, "cannot import 'listener_pkg.broken'.*not_installed"),
        ({"use": "listener_pkg.classes:Nope"}, "has no attribute 'Nope'"),
        ({"use": "listener_pkg.classes:ReturnsNone"}, "load_from_config returned None"),
        ({"use": "listener_pkg.classes:Takes"}, "returned {.*}, not a Consumer instance"),
        ({"use": "listener_pkg.classes:SEEN"}, "is not a consumer class, a function or a module"),
        (
            {"use": "listener_pkg.classes:Plain", "colur": "red"},
            r"listeners.x: unknown key 'colur'.*did you mean 'colour'",
        ),
        (
            {"use": "listener_pkg.classes:on_event", "colour": "red"},
            "function consumer takes no keys",
        ),
        (
            {"use": "listener_pkg.kinto_style", "url": "u", "tires": "3"},
            r"listeners.x: unknown key 'tires'.*did you mean 'tries'",
        ),
        ({"use": "listener_pkg.kinto_style"}, r"KeyError: 'listeners.x.url'"),
        (
            {"use": "listener_pkg.classes:WithLoader", "size": "big"},
            r"listeners.x.size must be int",
        ),
        ({"use": "listener_pkg.classes:WithLoader", "size": "0"}, "size must be at least 1"),
        ({"use": "log"}, "path .* or listeners.x.logger .* is required"),
        ({"use": "log", "path": "a", "level": "LOUD"}, "level must be a level name"),
        ({"use": "push", "per_recipient": "maybe"}, "per_recipient must be bool"),
        (
            {"use": "push", "per_recipient": "false"},
            "listeners.x.per_recipient=False would publish events with recipients nowhere",
        ),
        (
            {"use": "push", "hub_stream": "off", "broadcast_private": "on"},
            "listeners.x.broadcast_private=True publishes private events",
        ),
        ({"use": "function"}, r"listeners.x.function is required"),
        ({"use": "function", "function": "print"}, "must name a function as pkg.mod:func"),
        ({"use": "smtp", "port": "smtp"}, "listeners.x.port must be int"),
    ],
)
def test_every_way_a_listener_fails_to_load_is_one_clear_error(
    build: Build, package: str, declaration: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        build({"x": declaration})
    assert str(info.value).startswith(("listener 'x'", "listeners.x"))


@pytest.mark.parametrize(
    ("listeners", "hubs", "message"),
    [
        ({"x": {"mode": "inline"}}, None, "listeners.x needs 'use'"),
        ({"x": "log"}, None, "listeners.x must be a table of keys"),
        ({"x": {"use": 3}}, None, "listeners.x.use must be a non-empty str, not int"),
        (
            {"x": {"use": "log", "mode": "queud"}},
            None,
            "unknown mode 'queud'.*did you mean 'queued'",
        ),
        ({"x": {"use": "log", "queue": "q"}}, None, "listeners.x.queue needs mode = 'queued'"),
        (
            {"x": {"use": "log", "actions": 5}},
            None,
            "listeners.x.actions must be a list of strings",
        ),
        ({"x": {"use": "log", "actions": []}}, None, "actions must name at least one action"),
        ({"x": {"use": "log", "max_tries": "0"}}, None, "max_tries must be at least 1"),
        ({"x": {"use": "log", "max_tries": 1.5}}, None, "max_tries must be int, not float"),
        ({"x": {"use": "log", "dedupe": "perhaps"}}, None, "dedupe must be bool"),
        (
            {"x": {"use": "log", "job_timeout": 5}},
            None,
            "listeners.x.job_timeout needs mode = 'queued'",
        ),
        (
            {"x": {"use": "log", "mode": "queued", "job_timeout": "0"}},
            None,
            "listeners.x.job_timeout must be a positive number",
        ),
        (
            {"x": {"use": "log", "mode": "queued", "job_timeout": "soon"}},
            None,
            "listeners.x.job_timeout must be float",
        ),
        ({"x": {"use": "log", "filter": "{no"}}, None, "listeners.x.filter must be a filter table"),
        ({"x": {"use": "log", "filter": 3}}, None, "listeners.x.filter must be a filter table"),
        (
            {"x": {"use": "log", "filter": {"type": "event_typ", "values": ["a"]}}},
            None,
            "listeners.x.filter: unknown filter type 'event_typ'.*did you mean 'event_type'",
        ),
        ({"x.y": {"use": "log"}}, None, "without dots"),
        (None, {"h": {"filtre": {"type": "always"}}}, "hubs.h: unknown key 'filtre'.*'filter'"),
        (None, {"h": {"listeners": ["audti"]}}, "unknown listener 'audti'"),
        (
            {"audit": {"use": "log", "path": "p"}},
            {"h": {"listeners": ["audti"]}},
            "hubs.h.listeners: unknown listener 'audti'.*did you mean 'audit'",
        ),
        (
            {"audit": {"use": "log", "path": "p"}},
            {"h": {"listeners": ["audit", "audit"]}},
            "names a listener twice",
        ),
        (None, {"h": "x"}, "hubs.h must be a table of keys"),
        (None, {"h": {"listeners": 3}}, "hubs.h.listeners must be a list of strings"),
        (None, {"bad label!": {}}, "hub label 'bad label!'"),
        (
            {"a": {"use": "log", "path": "p"}},
            {DEFAULT_HUB: {}},
            "listeners \\['a'\\] are on no hub",
        ),
    ],
)
def test_every_bad_declaration_is_one_clear_error(
    build: Build, listeners: Any, hubs: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build(listeners, hubs)


def test_declarations_of_the_wrong_shape() -> None:
    with pytest.raises(ConfigurationError, match="LISTENERS must be a table of listeners"):
        parse_declarations(listeners=["a"])
    with pytest.raises(ConfigurationError, match="HUBS must be a table of hubs"):
        parse_declarations(hubs="a")
    assert not parse_declarations()


# -- filters, modes, hubs ----------------------------------------------------------------------


def test_actions_and_resources_filter_on_the_action_and_resource_fields(
    build: Build, package: str
) -> None:
    n = build(
        {
            "created_records": {
                "use": f"{package}.classes:Plain",
                "actions": "create",
                "resources": ["record", "collection"],
                "filter": {"type": "tag", "values": ["important"]},
            }
        }
    )
    registration = n.get_hub(DEFAULT_HUB).get_registration("created_records")
    assert registration.filter == And(
        WithTag("important"),
        Field("action", "create"),
        Field("resource", "record") | Field("resource", "collection"),
    )
    for title, fields in [
        ("yes", {"action": "create", "resource": "record"}),
        ("no-action", {"action": "delete", "resource": "record"}),
        ("no-resource", {"action": "create", "resource": "bucket"}),
        ("no-fields", {}),
        ("collection", {"action": "create", "resource": "collection"}),
    ]:
        n.send(Event(None, "kinto", title, tags=["important"], **fields))
    n.send(Event(None, "kinto", "untagged", action="create", resource="record"))
    assert consumer(n, "created_records").seen == ["yes", "collection"]


def test_listeners_on_no_hub_share_a_hub_that_passes_everything(build: Build, package: str) -> None:
    n = build(
        {
            "a": {"use": f"{package}.classes:Plain"},
            "b": {"use": f"{package}.classes:Plain"},
            "c": {"use": f"{package}.classes:Plain"},
        },
        {"orders": {"filter": {"type": "event_type", "values": ["order"]}, "listeners": "a c"}},
    )
    assert list(n.hubs) == ["orders", DEFAULT_HUB]
    assert n.get_hub("orders").filter == WithEventType("order")
    assert n.get_hub(DEFAULT_HUB).filter == Always()
    assert list(n.get_hub(DEFAULT_HUB).consumers) == ["b"]
    n.send(Event(None, "order", "o"))
    n.send(Event(None, "chat", "c"))
    assert consumer(n, "a", "orders").seen == ["o"]
    assert consumer(n, "b").seen == ["o", "c"]


def test_a_listener_named_by_two_hubs_is_loaded_once_per_hub(build: Build) -> None:
    n = build(
        {"live": {"use": "push"}},
        {"one": {"listeners": ["live"]}, "two": {"listeners": ["live"]}},
    )
    assert consumer(n, "live", "one") is not consumer(n, "live", "two")
    n.send(Event(None, "t"))
    assert len(n.backend.read("event-hub-one", "0").messages) == 1
    assert len(n.backend.read("event-hub-two", "0").messages) == 1


def test_queued_listeners_are_run_by_a_worker_on_the_named_queue(
    build: Build, package: str
) -> None:
    n = build(
        {
            "now": {"use": f"{package}.classes:Plain"},
            "later": {"use": f"{package}.classes:Plain", "mode": "queued", "queue": "slow"},
            "default": {
                "use": f"{package}.classes:Plain",
                "mode": "queued",
                "max_tries": 2,
                "job_timeout": "2.5",
            },
        }
    )
    result = n.send(Event(None, "t", "hello"))
    assert [(o.consumer, o.status) for o in result.outcomes] == [
        ("now", Status.RAN),
        ("later", Status.ENQUEUED),
        ("default", Status.ENQUEUED),
    ]
    assert consumer(n, "now").seen == ["hello"] and consumer(n, "later").seen == []
    assert n.backend.queue_length("slow") == 1 and n.backend.queue_length("notifycore") == 1
    assert n.get_hub(DEFAULT_HUB).get_registration("default").max_tries == 2
    assert n.get_hub(DEFAULT_HUB).get_registration("default").timeout == 2.5
    assert Worker(n, ["slow"]).drain() == 1
    assert consumer(n, "later").seen == ["hello"] and consumer(n, "default").seen == []
    assert Worker(n).drain() == 1
    assert consumer(n, "default").seen == ["hello"]


def test_a_worker_built_from_the_same_file_runs_the_queued_jobs_on_sqlite(
    tmp_path: Path, package: str
) -> None:
    path = tmp_path / "app.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            backend = "sqlite"
            backend_url = "sqlite:///{tmp_path / "shared.db"}"

            [hubs.records]
            filter = {{ type = "event_type", values = ["record"] }}
            listeners = ["mailer"]

            [listeners.mailer]
            use = "{package}.kinto_style"
            mode = "queued"
            url = "smtp://127.0.0.1"
            actions = ["create"]
            """
        )
    )
    web = Notifications(config=path, environ={})
    worker_side = Notifications(config=path, environ={})
    try:
        web.send(Event(None, "record", "made", action="create"))
        web.send(Event(None, "record", "gone", action="delete"))
        web.send(Event(None, "other", "ignored", action="create"))
        assert consumer(web, "mailer", "records").seen == []
        assert Worker(worker_side).drain() == 1
        assert consumer(worker_side, "mailer", "records").seen == ["made"]
    finally:
        web.close()
        worker_side.close()


def test_reconfiguring_replaces_declared_hubs_and_keeps_hubs_made_in_code(build: Build) -> None:
    n = build({"live": {"use": "push"}}, {"declared": {"listeners": ["live"]}})
    n.create_hub("in-code")
    old = consumer(n, "live", "declared")
    n.configure({"BACKEND": "memory", "HUBS": {"renamed": {}}})
    assert sorted(n.hubs) == ["in-code", "renamed"]
    assert old not in [r.consumer for h in n.hubs.values() for r in h.registrations]
    with pytest.raises(ConfigurationError, match="hubs.in-code: a hub with that label already"):
        n.configure({"BACKEND": "memory", "HUBS": {"in-code": {}}})
    assert sorted(n.hubs) == ["in-code", "renamed"]
    with pytest.raises(ConfigurationError, match="'lgo'"):  # fails to load: nothing changes
        n.configure({"BACKEND": "memory", "LISTENERS": {"x": {"use": "lgo"}}})
    assert sorted(n.hubs) == ["in-code", "renamed"]


def test_declared_hubs_exist_only_after_the_plugins_were_told(build: Build) -> None:
    from notifycore import hookimpl
    from notifycore.plugins import get_plugins

    hubs_when_created: list[list[str]] = []

    class Watcher:
        @hookimpl
        def notifycore_notifications_created(self, notifications: Notifications) -> None:
            hubs_when_created.append(list(notifications.hubs))

    plugins = get_plugins()
    name = plugins.register(Watcher(), name="hub-watcher")
    try:
        n = build(None, {"early": {}})
    finally:
        plugins.unregister(name=name)
    assert hubs_when_created == [[]]
    assert list(n.hubs) == ["early"]


def test_listener_config_is_kintos_flat_settings() -> None:
    config = ListenerConfig(
        {"listeners.a.url": "u", "listeners.a.n": "2", "listeners.a.on": "yes"},
        settings={"MAIL_SERVER": "mx"},
    )
    assert config.get_settings() is config
    assert config["MAIL_SERVER"] == "mx" and config.settings["MAIL_SERVER"] == "mx"
    assert config.get_int("listeners.a.n") == 2 and config.get_bool("listeners.a.on") is True
    assert config.get_float("listeners.a.n") == 2.0 and config.get_str("listeners.a.url") == "u"
    assert config.get_list("listeners.a.missing", ["d"]) == ["d"]
    assert config.unread("listeners.a.") == []  # n, on and url were read; nothing is left
    fresh = config.fresh()
    assert fresh.unread("listeners.a.") == ["listeners.a.url", "listeners.a.n", "listeners.a.on"]
    assert fresh.options("listeners.a.") == {"url": "u", "n": "2", "on": "yes"}
    assert fresh.unread("listeners.a.") == []
    with pytest.raises(ConfigurationError, match="listeners.a.url must be float, not str 'u'"):
        config.get_float("listeners.a.url")
