"""examples/kinto_email_listener: a record created over HTTP e-mails the administrator, for real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.kinto_email_listener.app import CONFIG, create_app
from notify_flask.testing import serve
from notifycore import ConfigurationError, Notifications

WAIT = 20.0


def config_for(smtp_port: int, directory: Path, **replace: str) -> Path:
    """The shipped notifycore.ini, pointed at the test's SMTP server."""
    text = CONFIG.read_text().replace("127.0.0.1:1025", f"127.0.0.1:{smtp_port}")
    for old, new in replace.items():
        text = text.replace(old, new)
    path = directory / "notifycore.ini"
    path.write_text(text)
    return path


RECORDS = "/buckets/default/collections/notes/records"


def test_creating_a_record_mails_the_administrator_and_updating_it_does_not(
    smtp_server: Any, tmp_path: Path
) -> None:
    app, notifications = create_app(config_for(smtp_server.port, tmp_path))
    try:
        with serve(app) as base, httpx.Client(base_url=base, timeout=WAIT) as client:
            created = client.post(RECORDS, json={"data": {"note": "kinto"}}, auth=("alice", "s3"))
            assert created.status_code == 201
            record_id = created.json()["data"]["id"]
            # The listener is synchronous: the mail was accepted before the response was sent.
            assert len(smtp_server.handler.received) == 1

            updated = client.patch(
                f"{RECORDS}/{record_id}", json={"data": {"note": "edited"}}, auth=("alice", "s3")
            )
            assert updated.status_code == 200
            assert len(smtp_server.handler.received) == 1, "actions = create: updates send nothing"
    finally:
        notifications.close()

    mail_from, rcpt_tos, _ = smtp_server.handler.received[0]
    assert (mail_from, rcpt_tos) == ("postmaster@localhost", ["admin@example.org"])
    (message,) = smtp_server.handler.messages()
    assert message["Subject"] == "record created"
    assert message["To"] == "admin@example.org"
    body = message.get_content()
    assert "User id: account:alice" in body
    assert f"URI: {RECORDS}/{record_id}" in body


def test_notifycore_check_loads_the_listener_from_the_file(
    smtp_server: Any, tmp_path: Path, processes: Any
) -> None:
    check = processes.start(
        "notifycore", "check", "--config", str(config_for(smtp_server.port, tmp_path))
    )
    output = check.communicate(timeout=WAIT)[0]
    assert check.returncode == 0, output
    assert "listener send_email  use: examples.kinto_email_listener.kinto_email" in output
    assert "Field('action', 'create') & Field('resource', 'record')" in output
    assert f"Listener(127.0.0.1:{smtp_server.port} to admin@example.org)" in output


def test_a_misspelt_listener_setting_is_refused_with_a_suggestion(
    smtp_server: Any, tmp_path: Path
) -> None:
    path = config_for(smtp_server.port, tmp_path, **{".tls =": ".tsl ="})
    with pytest.raises(ConfigurationError, match=r"unknown key .tsl.*did you mean .tls."):
        Notifications(config=path, environ={})


def test_python_m_runs_the_records_api_with_the_listener(
    smtp_server: Any,
    tmp_path: Path,
    processes: Any,
    port: int,
    wait_serving: Callable[..., httpx.Response],
) -> None:
    config = config_for(smtp_server.port, tmp_path)
    server = processes.start(
        "-m", "examples.kinto_email_listener", PORT=str(port), KINTO_EXAMPLE_CONFIG=str(config)
    )
    base = f"http://127.0.0.1:{port}"
    assert wait_serving(base + "/", server).status_code == 404
    created = httpx.post(
        base + RECORDS, json={"data": {"note": "kinto"}}, auth=("bob", "s"), timeout=WAIT
    )
    assert created.status_code == 201
    (message,) = smtp_server.handler.messages()
    assert "User id: account:bob" in message.get_content()
