"""The web demo in headless Chromium: a sent event appears; a missed one comes back after a reconnect.

Debian's chromium is installed by ./scripts/test; without it this test fails, it never skips.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from notify_flask.testing import serve
from notifycore import Event
from tests.demo_cli import ROOT, send_from_the_command_line


@pytest.fixture
def browser_page(chromium: Browser) -> Iterator[Page]:
    # One timezone, so that the time a page shows can be compared with the event's.
    page = chromium.new_page(timezone_id="UTC")
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        page.close()


def test_the_demo_page_shows_events_live_and_catches_up_after_a_reconnect(
    browser_page: Page,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    demo: Any,
    demo_database: str,
) -> None:
    app, notifications = demo()
    page = browser_page
    with serve(app) as base:
        page.goto(f"{base}/login/alice")
        expect(page.locator("#user")).to_have_text("alice")
        expect(page.locator("#status")).to_have_text("live")

        # The form sends through the POST route, as the signed-in user; the hub's stream
        # brings it back.
        page.fill("input[name=title]", "Hello from the form")
        page.fill("input[name=body]", "typed in Chromium")
        page.click("button[type=submit]")
        expect(page.locator("#feed li").last).to_contain_text(
            "Hello from the form — typed in Chromium from alice at "
        )

        # notifycore send in another process, on the same SQLite file, reaches alice's own
        # stream, and not the feed: an event with recipients is private.
        env = {**os.environ, "NOTIFYCORE_BACKEND_URL": demo_database, "PYTHONPATH": str(ROOT)}
        send_from_the_command_line(env, tmp_path, "From the command line", "alice")
        # Without --sender, the command line says it sent it.
        expect(page.locator("#mine li").last).to_contain_text("From the command line from cli")
        # Sent after it on the same hub: once it shows, the private one would have too.
        notifications.send(Event(None, "chat", "Public after the private one"))
        expect(page.locator("#feed li").last).to_contain_text("Public after the private one")
        expect(page.locator("#feed li", has_text="From the command line")).to_have_count(0)

        # Drop the connection, miss two events, reconnect: they arrive, once each.
        page.evaluate("window.demo.disconnect()")
        expect(page.locator("#status")).to_have_text("disconnected")
        notifications.send(
            Event(None, "chat", "Sent while you were away", sender="bob", recipients=["alice"])
        )
        notifications.send(Event(None, "chat", "Public while you were away", sender="bob"))
        page.evaluate("window.demo.reconnect()")
        expect(page.locator("#mine li", has_text="Sent while you were away")).to_have_count(1)
        expect(page.locator("#feed li", has_text="Public while you were away")).to_have_count(1)
        expect(page.locator("#feed li", has_text="Sent while you were away")).to_have_count(0)
        expect(page.locator("#feed li", has_text="Hello from the form")).to_have_count(1)

        # Bob's page never shows what was addressed to alice alone, live or replayed.
        page.goto(f"{base}/login/bob")
        expect(page.locator("#user")).to_have_text("bob")
        expect(page.locator("#status")).to_have_text("live")
        notifications.send(Event(None, "chat", "Only for alice", recipients=["alice"]))
        notifications.send(Event(None, "chat", "For bob", recipients=["bob"]))
        notifications.send(Event(None, "chat", "For everyone, last"))
        expect(page.locator("#mine li").last).to_contain_text("For bob")
        expect(page.locator("#feed li").last).to_contain_text("For everyone, last")
        for private in ("Only for alice", "Sent while you were away", "From the command line"):
            expect(page.locator("li", has_text=private)).to_have_count(0)
        # Bob replaying the whole feed, with his own cookie, finds none of alice's events.
        history = page.evaluate(
            "fetch('/notifications/event-hub-Demo/events').then((r) => r.json())"
        )
        titles = [item["event"]["title"] for item in history["events"]]
        assert "For everyone, last" in titles
        assert not {"Only for alice", "Sent while you were away", "From the command line"} & set(
            titles
        )
        # Bob cannot post as alice: the demo's authorize_send refuses another sender.
        refused = page.evaluate(
            """fetch('/notifications/events', {method: 'POST',
                  headers: {'Content-Type': 'application/json'},
                  body: JSON.stringify({event_type: 'chat', title: 'forged', sender: 'alice'})})
               .then((r) => r.status)"""
        )
        assert refused == 403


def test_the_demo_page_opens_with_recent_history_showing_who_sent_each_event_and_when(
    browser_page: Page, demo: Any
) -> None:
    app, notifications = demo()
    sent_before = [
        Event(None, "chat", "Earlier, for everyone", body="before you came", sender="bob"),
        Event(None, "chat", "Earlier, for alice", sender="bob", recipients=["alice"]),
        Event(None, "chat", "Earlier, for bob", sender="alice", recipients=["bob"]),
        Event(None, "chat", "Earlier, from nobody"),
    ]
    for event in sent_before:
        notifications.send(event)
    page = browser_page
    with serve(app) as base:
        page.goto(f"{base}/login/alice")
        expect(page.locator("#status")).to_have_text("live")
        # The history route's events, oldest first, before anything live.
        expect(page.locator("#feed li .text")).to_have_text(
            ["Earlier, for everyone — before you came", "Earlier, from nobody"]
        )
        expect(page.locator("#mine li .text")).to_have_text(["Earlier, for alice"])
        first = page.locator("#feed li").first
        expect(first.locator(".sender")).to_have_text("bob")
        stamp = sent_before[0].timestamp
        expect(first.locator("time")).to_have_attribute(
            "datetime", json.loads(sent_before[0].to_json())["timestamp"]
        )
        expect(first.locator("time")).to_have_text(stamp.astimezone(UTC).strftime("%H:%M:%S"))
        expect(page.locator("#feed li").nth(1).locator(".sender")).to_have_text("(no sender)")

        # Live after history: the next event follows once, and the history is not shown twice.
        live = Event(None, "chat", "Live, after the history", sender="bob")
        notifications.send(live)
        expect(page.locator("#feed li .text")).to_have_text(
            [
                "Earlier, for everyone — before you came",
                "Earlier, from nobody",
                "Live, after the history",
            ]
        )
        expect(page.locator("#feed li").last.locator("time")).to_have_text(
            live.timestamp.astimezone(UTC).strftime("%H:%M:%S")
        )
        expect(page.locator("li", has_text="Earlier, for bob")).to_have_count(0)

        # Bob's page opens with his own history, and none of alice's.
        page.goto(f"{base}/login/bob")
        expect(page.locator("#status")).to_have_text("live")
        expect(page.locator("#mine li .text")).to_have_text(["Earlier, for bob"])
        expect(page.locator("#mine li .sender")).to_have_text(["alice"])
        expect(page.locator("li", has_text="Earlier, for alice")).to_have_count(0)
        expect(page.locator("#feed li .text")).to_have_count(3)
