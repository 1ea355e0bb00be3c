"""AMQP_URL is a secret setting: its password never shows in the settings' repr or errors."""

from __future__ import annotations

import pytest

from notifycore import ConfigurationError, Notifications

URL = "amqp://app:hunter2@127.0.0.1:5699//;amqp://app:hunter2@127.0.0.2:5699//"


def test_the_settings_repr_masks_the_amqp_passwords() -> None:
    n = Notifications(config={"BACKEND": "memory", "AMQP_URL": URL}, environ={})
    try:
        text = repr(n.settings)
        assert (
            "'AMQP_URL': 'amqp://app:***@127.0.0.1:5699//;amqp://app:***@127.0.0.2:5699//'" in text
        )
        assert "hunter2" not in text and "guest:guest" not in text
        assert n.settings["AMQP_URL"] == URL
    finally:
        n.close()


def test_a_wrongly_typed_amqp_url_is_masked_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as info:
        Notifications(config={"BACKEND": "memory", "AMQP_URL": {"password": "hunter2"}}, environ={})
    assert "AMQP_URL" in str(info.value) and "hunter2" not in str(info.value)
