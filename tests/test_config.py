from __future__ import annotations

import pytest

from notifycore import ConfigurationError, Notifications


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
