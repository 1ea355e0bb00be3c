from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask

from notifycore import (
    ConfigurationError,
    LogConsumer,
    Notifications,
    PushConsumer,
    load_config,
)
from notifycore.config import read_config_file
from notifycore.filters import Field, WithEventType


def make(config: dict[str, object], environ: dict[str, str] | None = None) -> Notifications:
    return Notifications(config=config, environ=environ or {})


def test_defaults() -> None:
    n = make({})
    assert n.settings["BACKEND"] == "sqlite"
    assert n.settings["MAX_EVENT_SIZE"] == 65536
    assert n.settings["CONSUMER_ERRORS"] == "log"


def test_unknown_key_gets_a_did_you_mean() -> None:
    with pytest.raises(
        ConfigurationError, match="unknown setting 'BAKEND'.*did you mean 'BACKEND'"
    ):
        make({"BAKEND": "memory"})
    with pytest.raises(ConfigurationError, match="NOTIFYCORE_MAX_EVENT_SIZ.*MAX_EVENT_SIZE"):
        make({}, {"NOTIFYCORE_MAX_EVENT_SIZ": "10"})


def test_wrong_types_name_the_key_and_the_type() -> None:
    with pytest.raises(ConfigurationError, match="MAX_EVENT_SIZE .*must be int, not 'big'"):
        make({"MAX_EVENT_SIZE": "big"})
    with pytest.raises(ConfigurationError, match="MAX_TRIES .*must be int, not bool"):
        make({"MAX_TRIES": True})
    with pytest.raises(ConfigurationError, match="CONSUMER_ERRORS .*one of 'log', 'raise'"):
        make({"CONSUMER_ERRORS": "ignore"})
    with pytest.raises(ConfigurationError, match="environment variable NOTIFYCORE_MAX_TRIES"):
        make({}, {"NOTIFYCORE_MAX_TRIES": "many"})


def test_environment_wins_and_is_converted() -> None:
    n = make(
        {"MAX_TRIES": 2, "RETRY_BACKOFF": 3},
        {
            "NOTIFYCORE_MAX_TRIES": "7",
            "NOTIFYCORE_RETRY_BACKOFF": "0.5",
            "NOTIFYCORE_DISABLE_PLUGINS": "",
            "OTHER_VARIABLE": "ignored",
        },
    )
    assert n.settings["MAX_TRIES"] == 7
    assert n.settings["RETRY_BACKOFF"] == 0.5
    assert make({"RETRY_BACKOFF": 3}).settings["RETRY_BACKOFF"] == 3.0


def test_the_real_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYCORE_MAX_TRIES", "9")
    assert Notifications(config={"BACKEND": "memory"}).settings["MAX_TRIES"] == 9


# -- one loader for every source -------------------------------------------------------------

TOML = """
backend = "memory"
max_tries = 3

[hubs.orders]
filter = { type = "event_type", values = ["order.created", "order.paid"] }
listeners = ["audit", "pusher"]

[listeners.audit]
use = "log"
path = "audit.jsonl"

[listeners.pusher]
use = "push"
mode = "queued"
queue = "live"
per_recipient = true
actions = ["create", "update"]
"""

JSON_FORM = {
    "notifycore": {
        "BACKEND": "memory",
        "MAX_TRIES": 3,
        "hubs": {
            "orders": {
                "filter": {"type": "event_type", "values": ["order.created", "order.paid"]},
                "listeners": ["audit", "pusher"],
            }
        },
        "listeners": {
            "audit": {"use": "log", "path": "audit.jsonl"},
            "pusher": {
                "use": "push",
                "mode": "queued",
                "queue": "live",
                "per_recipient": True,
                "actions": ["create", "update"],
            },
        },
    }
}

INI_SECTIONS = """
[notifycore]
backend = memory
max_tries = 3

[hubs.orders]
filter = {"type": "event_type", "values": ["order.created", "order.paid"]}
listeners = audit pusher

[listeners.audit]
use = log
path = audit.jsonl

[listeners.pusher]
use = push
mode = queued
queue = live
per_recipient = true
actions = create update
"""

INI_KINTO = """
[app:main]
pyramid.includes = something_else
notifycore.backend = memory
notifycore.max_tries = 3
notifycore.hubs.orders.filter = {"type": "event_type", "values": ["order.created", "order.paid"]}
notifycore.hubs.orders.listeners = audit pusher
notifycore.listeners = audit pusher
notifycore.listeners.audit.use = log
notifycore.listeners.audit.path = audit.jsonl
notifycore.listeners.pusher.use = push
notifycore.listeners.pusher.mode = queued
notifycore.listeners.pusher.queue = live
notifycore.listeners.pusher.per_recipient = yes
notifycore.listeners.pusher.actions = create, update
"""

MAPPING = {
    "BACKEND": "memory",
    "MAX_TRIES": 3,
    "HUBS": {
        "orders": {
            "filter": WithEventType("order.created", "order.paid"),
            "listeners": ["audit", "pusher"],
        }
    },
    "LISTENERS": JSON_FORM["notifycore"]["listeners"],
}


def describe(n: Notifications) -> list[tuple[object, ...]]:
    """What a configuration built, in comparable form."""
    out: list[tuple[object, ...]] = []
    for hub in n.hubs.values():
        for r in hub.registrations:
            c = r.consumer
            attrs = (c.path,) if isinstance(c, LogConsumer) else (c.per_recipient, c.hub_stream)  # type: ignore[attr-defined]
            out.append((hub.label, hub.filter, r.name, r.mode, r.queue, r.filter, type(c), attrs))
    return out


def build(config: object, **kwargs: object) -> Notifications:
    n = Notifications(config=config, environ={}, **kwargs)  # type: ignore[arg-type]
    return n


EXPECTED = [
    (
        "orders",
        WithEventType("order.created", "order.paid"),
        "audit",
        "inline",
        None,
        None,
        LogConsumer,
        ("audit.jsonl",),
    ),
    (
        "orders",
        WithEventType("order.created", "order.paid"),
        "pusher",
        "queued",
        "live",
        Field("action", "create") | Field("action", "update"),
        PushConsumer,
        (True, True),
    ),
]


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".toml", TOML),
        (".json", json.dumps(JSON_FORM)),
        (".ini", INI_SECTIONS),
        (".ini", INI_KINTO),
        (".cfg", INI_SECTIONS),
    ],
    ids=["toml", "json", "ini-sections", "ini-kinto-flat", "cfg"],
)
def test_every_file_form_builds_what_the_mapping_builds(
    tmp_path: Path, suffix: str, text: str
) -> None:
    path = tmp_path / f"notifycore{suffix}"
    path.write_text(text)
    from_file = build(path)
    from_text_path = build(str(path))
    from_mapping = build(MAPPING)
    try:
        assert describe(from_file) == describe(from_mapping) == describe(from_text_path) == EXPECTED
        assert from_file.settings["MAX_TRIES"] == 3
        assert load_config(path) == read_config_file(path)
    finally:
        for n in (from_file, from_text_path, from_mapping):
            n.close()


def test_a_flask_config_is_read_through_its_prefix() -> None:
    app = Flask("configured")
    app.config.update(
        {f"NOTIFYCORE_{k}": v for k, v in MAPPING.items()},
        TESTING=True,  # unrelated keys without the prefix are someone else's
    )
    n = Notifications(app, config=app.config, config_prefix="NOTIFYCORE_", environ={})
    try:
        assert describe(n) == EXPECTED
        assert app.extensions["notifications"] is n
    finally:
        n.close()
    app.config["NOTIFYCORE_BAKEND"] = "memory"
    with pytest.raises(ConfigurationError, match="'BAKEND'.*did you mean 'BACKEND'"):
        Notifications(config=app.config, config_prefix="NOTIFYCORE_", environ={})


def test_load_config_canonical_form_is_stable() -> None:
    once = load_config({"backend": "memory", "listeners.a.use": "log", "listeners.a.path": "x"})
    assert once == {"BACKEND": "memory", "LISTENERS": {"a": {"use": "log", "path": "x"}}}
    assert load_config(once) == once
    assert load_config(None) == {}
    assert load_config({"X_BACKEND": "memory", "OTHER": 1}, prefix="X_") == {"BACKEND": "memory"}


def test_the_environment_wins_over_a_file(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text(TOML)
    listeners = {"audit": {"use": "log", "path": "from-env.jsonl"}}
    n = Notifications(
        config=path,
        environ={
            "NOTIFYCORE_MAX_TRIES": "7",
            "NOTIFYCORE_HUBS": json.dumps({"orders": {"listeners": ["audit"]}}),
            "NOTIFYCORE_LISTENERS": json.dumps(listeners),
        },
    )
    try:
        assert n.settings["MAX_TRIES"] == 7
        assert [(r.name, r.consumer.path) for r in n.get_hub("orders").registrations] == [  # type: ignore[attr-defined]
            ("audit", "from-env.jsonl")
        ]
    finally:
        n.close()
    with pytest.raises(ConfigurationError, match="NOTIFYCORE_HUBS.*must be a JSON object"):
        Notifications(config=path, environ={"NOTIFYCORE_HUBS": "orders"})


def test_errors_in_a_file_name_the_file_the_key_and_the_type(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('backend = "memory"\nmax_tries = "many"\n')
    with pytest.raises(
        ConfigurationError, match=r"MAX_TRIES \(from configuration file .*bad.toml\) must be int"
    ):
        build(path)
    path.write_text('backend = "memory"\nmax_trys = 2\n')
    with pytest.raises(ConfigurationError, match="'MAX_TRYS'.*did you mean 'MAX_TRIES'"):
        build(path)


@pytest.mark.parametrize(
    ("suffix", "text", "message"),
    [
        (".ini", "[other]\nkey = 1\n", r"no \[notifycore\] section"),
        (".ini", "[notifycore\n", "not valid ini"),
        (".toml", "backend = \n", "not valid toml"),
        (".json", "[1, 2]", "must be a table of settings"),
        (".json", '{"notifycore": 3}', "'notifycore' must be a table"),
        (".ini", "[notifycore]\nbackend.name = memory\n", "dotted keys are hubs"),
        (".toml", 'listeners = "a b"\n', "listeners lists 'a' but nothing declares it"),
        (
            ".ini",
            "[notifycore]\nlisteners = audit\nlisteners.audti.use = log\n",
            "listeners.audti is declared but not in listeners = ...; did you mean 'audit'",
        ),
        (".ini", "[notifycore]\nlisteners.audit = log\n", r"must be listeners.<name>.<key>"),
        (".toml", "listeners = 3\n", "listeners must be a table of listeners"),
        (".toml", "[listeners]\naudit = 3\n", "listeners.audit must be a table of keys"),
    ],
)
def test_malformed_files_get_one_clear_error(
    tmp_path: Path, suffix: str, text: str, message: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_config(path)


def test_loader_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read configuration file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigurationError, match="prefix applies to a mapping"):
        load_config(tmp_path / "x.toml", prefix="NOTIFYCORE_")
    with pytest.raises(ConfigurationError, match="mapping or a file path, not int"):
        load_config(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="setting names are strings"):
        load_config({1: "x"})  # type: ignore[dict-item]
