"""Secrets are masked in every repr, error and command output the core makes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from notifycore import ConfigurationError, Notifications, Setting
from notifycore.backends.memory import MemoryBackend
from notifycore.cli import main
from notifycore.declarations import parse_declarations
from notifycore.settings import CORE_SETTINGS, Settings, mask_url, redact

SECRET = "hunter2"
declared = {s.name: s for s in CORE_SETTINGS}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("amqp://app:hunter2@rabbit:5672//", "amqp://app:***@rabbit:5672//"),
        ("amqp://a:hunter2@h1//;amqp://a:hunter2@h2//", "amqp://a:***@h1//;amqp://a:***@h2//"),
        ("redis://cache/0?password=hunter2&db=1", "redis://cache/0?password=***&db=1"),
        (
            "redis+sentinel://s/m?sentinel_password=hunter2",
            "redis+sentinel://s/m?sentinel_password=***",
        ),
        ("sqlite:///notifycore.db", "sqlite:///notifycore.db"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        # Characters a password may hold unencoded: everything up to the last @ is userinfo.
        ("redis://:pa,ss@127.0.0.1:16391/0", "redis://:***@127.0.0.1:16391/0"),
        ("redis://:pa;ss@127.0.0.1:16391/0", "redis://:***@127.0.0.1:16391/0"),
        ("redis://:p@ss@127.0.0.1:16392/0", "redis://:***@127.0.0.1:16392/0"),
        ("redis://:pa ss@cache/0", "redis://:***@cache/0"),
        ("amqp://guest:wr,ong@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
        (
            "amqp://a:x;y@h1//;amqp://b:p@q@h2//,amqp://c:z@h3//",
            "amqp://a:***@h1//;amqp://b:***@h2//,amqp://c:***@h3//",
        ),
        ("redis://user@cache/0", "redis://user@cache/0"),
        ("see redis://:s3@cache/0 (down)", "see redis://:***@cache/0 (down)"),
    ],
)
def test_mask_url_hides_passwords_only(url: str, shown: str) -> None:
    assert mask_url(url) == shown


#: Hosts, users and the rest of a URL: plain text a password is never mistaken for.
_plain = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=12)
_password = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20
).filter(lambda pw: "://" not in pw)


@given(
    urls=st.lists(
        st.tuples(
            st.sampled_from(["redis", "rediss", "amqp", "amqps", "redis+sentinel", "memory"]),
            _plain | st.just(""),
            _password,
            _plain,
            st.sampled_from(["", ":6379", ":5672"]),
            st.sampled_from(["", "/0", "//", "/vhost?x=1"]),
        ),
        min_size=1,
        max_size=3,
    ),
    separator=st.sampled_from([";", ",", " ", "; "]),
    before=st.sampled_from(["", "cannot reach ", "BACKEND_URL="]),
)
def test_no_password_survives_masking(
    urls: list[tuple[str, str, str, str, str, str]], separator: str, before: str
) -> None:
    """A URL or a kombu failover list (``a;b``): every password is gone, whatever it holds."""
    text = before + separator.join(
        f"{scheme}://{user}:{password}@{host}{port}{path}"
        for scheme, user, password, host, port, path in urls
    )
    masked = mask_url(text)
    for scheme, user, password, host, port, _path in urls:
        # Only a password that is no part of the rest of the text can be looked for.
        assume(password not in text.replace(f":{password}@", ":@"))
        # Nor one that the mask itself spells ("*", "**").
        assume(password not in "***")
        assert password not in masked, (text, masked)
        assert f"{scheme}://{user}:***@{host}{port}" in masked, (text, masked)
    assert mask_url(masked) == masked


def test_the_settings_repr_masks_secret_settings_urls_and_secret_keys() -> None:
    settings = Settings(
        {
            **declared,
            "API_TOKEN": Setting("API_TOKEN", str, None, "A token.", nullable=True, secret=True),
        },
        {
            "BACKEND_URL": f"memory://admin:{SECRET}@host/",
            "API_TOKEN": SECRET,
            "LISTENERS": {"mailer": {"use": "smtp", "password": SECRET, "port": 25}},
        },
        environ={},
    )
    for text in (repr(settings), str(settings), f"{settings}"):
        assert SECRET not in text
        assert "memory://admin:***@host/" in text
        assert "'API_TOKEN': '***'" in text
        assert "'password': '***'" in text and "'port': 25" in text
    # The values themselves are what the application configured.
    assert settings["API_TOKEN"] == SECRET
    assert settings["LISTENERS"]["mailer"]["password"] == SECRET


def test_a_secret_setting_is_masked_in_its_errors() -> None:
    pin = Setting("PIN", int, 0, "A PIN.", secret=True)
    token = Setting("TOKEN", str, None, "A token.", nullable=True, secret=True)
    cases: list[Callable[[], object]] = [
        lambda: Settings({"PIN": pin}, environ={"NOTIFYCORE_PIN": SECRET}),
        lambda: Settings({"TOKEN": token}, {"TOKEN": 4_815_162_342}, environ={}),
        lambda: Settings(
            {"PIN": Setting("PIN", int, 0, "A PIN.", minimum=10**12, secret=True)},
            {"PIN": 4_815_162_342},
            environ={},
        ),
    ]
    for make in cases:
        with pytest.raises(ConfigurationError) as info:
            make()
        assert SECRET not in str(info.value) and "4815162342" not in str(info.value)
        assert "***" in str(info.value)


def test_redact_masks_whole_secrets_and_nested_ones() -> None:
    assert redact(SECRET, secret=True) == "***"
    assert redact(None, secret=True) is None
    assert redact({"a": [{"api_key": SECRET}], "bypass": 1}) == {
        "a": [{"api_key": "***"}],
        "bypass": 1,
    }


def test_a_listener_declaration_repr_leaves_its_options_out() -> None:
    declarations = parse_declarations(None, {"mailer": {"use": "log", "password": SECRET}})
    assert declarations.listeners["mailer"].options == {"password": SECRET}
    assert SECRET not in repr(declarations)


def test_backend_and_notifications_reprs_mask_the_url() -> None:
    backend = MemoryBackend(f"memory://admin:{SECRET}@host/")
    assert repr(backend) == "<MemoryBackend memory://admin:***@host/>"
    notifications = Notifications(
        config={"BACKEND": "memory", "BACKEND_URL": f"memory://admin:{SECRET}@host/"}, environ={}
    )
    try:
        assert SECRET not in repr(notifications)
        assert SECRET not in repr(notifications.settings)
    finally:
        notifications.close()


def test_cli_output_and_errors_never_show_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = tmp_path / "good.toml"
    good.write_text(f'backend = "memory"\nbackend_url = "memory://admin:{SECRET}@host/"\n')
    assert main(["check", "--config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("backend_url = 4815162342\n")
    assert main(["check", "--config", str(bad)]) != 0
    ini = tmp_path / "bad.ini"
    ini.write_text(f"[notifycore]\nbackend = memory\nbackend_url {SECRET}\n")
    assert main(["check", "--config", str(ini)]) != 0
    headless = tmp_path / "headless.ini"
    headless.write_text(f"backend_url = memory://a:{SECRET}@h/\n")
    assert main(["check", "--config", str(headless)]) != 0
    out, err = capsys.readouterr()
    assert "ok: 0 hub(s)" in out
    assert "BACKEND_URL" in err and "cannot parse line 3" in err and "line 1" in err
    everything = out + err + caplog.text
    assert SECRET not in everything and "4815162342" not in everything
