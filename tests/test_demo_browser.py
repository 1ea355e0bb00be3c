"""The web demo in headless Chromium: a sent event appears; a missed one comes back after a reconnect.

Debian's chromium is installed by ./scripts/test; without it this test fails, it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from examples.demo.app import create_app
from notify_flask.testing import serve
from notifycore import Event

ROOT = Path(__file__).resolve().parent.parent
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


@pytest.fixture
def browser_page() -> Iterator[Page]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail(
            "chromium is not installed: ./scripts/test installs it (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def test_the_demo_page_shows_events_live_and_catches_up_after_a_reconnect(
    browser_page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"sqlite:///{tmp_path / 'demo.db'}"
    app, notifications = create_app(database)
    page = browser_page
    with serve(app) as base:
        page.goto(f"{base}/login/alice")
        expect(page.locator("#user")).to_have_text("alice")
        expect(page.locator("#status")).to_have_text("live")

        # The form sends through the POST route; the hub's stream brings it back.
        page.fill("input[name=title]", "Hello from the form")
        page.fill("input[name=body]", "typed in Chromium")
        page.click("button[type=submit]")
        expect(page.locator("#feed li").last).to_contain_text(
            "Hello from the form — typed in Chromium"
        )

        # notifycore send in another process, on the same SQLite file, reaches the page.
        env = {**os.environ, "NOTIFYCORE_BACKEND_URL": database, "PYTHONPATH": str(ROOT)}
        sent = subprocess.run(
            [
                NOTIFYCORE,
                "send",
                "--app",
                "examples.demo.app:notifications",
                "--type",
                "chat",
                "--title",
                "From the command line",
                "--sender",
                "cli",
                "--recipient",
                "alice",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        expect(page.locator("#mine li").last).to_contain_text("From the command line")
        expect(page.locator("#feed li").last).to_contain_text("From the command line")

        # Drop the connection, miss an event, reconnect: it arrives, once.
        page.evaluate("window.demo.disconnect()")
        expect(page.locator("#status")).to_have_text("disconnected")
        notifications.send(
            Event(None, "chat", "Sent while you were away", sender="bob", recipients=["alice"])
        )
        page.wait_for_timeout(300)
        expect(page.locator("#mine li", has_text="Sent while you were away")).to_have_count(0)
        page.evaluate("window.demo.reconnect()")
        expect(page.locator("#mine li", has_text="Sent while you were away")).to_have_count(1)
        expect(page.locator("#feed li", has_text="Sent while you were away")).to_have_count(1)
        expect(page.locator("#feed li", has_text="Hello from the form")).to_have_count(1)

        # Bob's page never shows what was addressed to alice alone.
        page.goto(f"{base}/login/bob")
        expect(page.locator("#status")).to_have_text("live")
        notifications.send(Event(None, "chat", "Only for alice", recipients=["alice"]))
        notifications.send(Event(None, "chat", "For bob", recipients=["bob"]))
        expect(page.locator("#mine li").last).to_contain_text("For bob")
        expect(page.locator("#mine li", has_text="Only for alice")).to_have_count(0)
    notifications.close()
