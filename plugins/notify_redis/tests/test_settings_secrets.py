"""REDIS_URL is a secret setting: its password never shows in the settings' repr or errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifycore import ConfigurationError, Notifications
from notifycore.cli import main

URL = "redis://app:hunter2@127.0.0.1:6399/0"


def test_the_settings_repr_masks_the_redis_password() -> None:
    n = Notifications(config={"BACKEND": "memory", "REDIS_URL": URL}, environ={})
    try:
        assert "'REDIS_URL': 'redis://app:***@127.0.0.1:6399/0'" in repr(n.settings)
        assert "hunter2" not in repr(n.settings) + str(n.settings)
        assert n.settings["REDIS_URL"] == URL
    finally:
        n.close()


def test_errors_and_check_output_mask_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigurationError) as info:
        Notifications(config={"BACKEND": "memory", "REDIS_URL": ["hunter2"]}, environ={})
    assert "hunter2" not in str(info.value) and "REDIS_URL" in str(info.value)
    config = tmp_path / "notifycore.toml"
    config.write_text(f'backend = "redis"\nredis_url = "{URL}"\n')
    assert main(["check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "backend: redis" in out and "hunter2" not in out + err
