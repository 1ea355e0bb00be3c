"""The demo's notification centre in headless Chromium: the bell, the list, reads, preferences.

Two tabs of alice share her inbox: a new item raises the badge in both, a read in
one clears it in the other, a reload keeps the state; bob's badge never moves for
alice's events, even those sent by ``notifycore send`` from another process. The
test keeps a screenshot of the open dropdown at ``artifacts/notification-centre.png``
(git-ignored) for a person to look at.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import request
from playwright.sync_api import Browser, BrowserContext, Page, expect

from notify_flask.testing import serve
from notifycore import DigestConsumer, Event, JobOutcome
from notifycore.testing import wait_for
from tests.demo_cli import ROOT, send_from_the_command_line

SCREENSHOT = ROOT / "artifacts" / "notification-centre.png"


@pytest.fixture
def contexts(chromium: Browser) -> Iterator[tuple[BrowserContext, BrowserContext]]:
    """Two browser profiles (their own cookies): one for alice's tabs, one for bob's."""
    alice, bob = chromium.new_context(), chromium.new_context()
    for context in (alice, bob):
        context.set_default_timeout(20_000)
    try:
        yield alice, bob
    finally:
        alice.close()
        bob.close()


def open_as(context: BrowserContext, base: str, user: str) -> Page:
    page = context.new_page()
    page.goto(f"{base}/login/{user}")
    expect(page.locator("#user")).to_have_text(user)
    expect(page.locator("#status")).to_have_text("live")
    return page


def badge(page: Page) -> str:
    text: str = page.locator("#badge").inner_text()
    return text


def test_the_bell_follows_alices_inbox_in_two_tabs_and_never_moves_for_bob(
    contexts: tuple[BrowserContext, BrowserContext],
    tmp_path: Path,
    demo: Any,
    demo_database: str,
) -> None:
    app, notifications = demo()
    # Something to read before any tab opens: the page loads it from the inbox.
    notifications.send(Event(None, "chat", "Welcome back", sender="bob", recipients=["alice"]))
    alice_context, bob_context = contexts
    with serve(app) as base:
        first = open_as(alice_context, base, "alice")
        second = open_as(alice_context, base, "alice")
        bobs = open_as(bob_context, base, "bob")
        for page in (first, second):
            expect(page.locator("#badge")).to_have_text("1")
        expect(bobs.locator("#badge")).to_have_text("0")

        # notifycore send, in another process on the same SQLite file: alice's badge rises in
        # both tabs at once; bob's stays at 0.
        env = {**os.environ, "NOTIFYCORE_BACKEND_URL": demo_database, "PYTHONPATH": str(ROOT)}
        send_from_the_command_line(env, tmp_path, "From the command line", "alice")
        for page in (first, second):
            expect(page.locator("#badge")).to_have_text("2")
        notifications.send(
            Event(None, "chat", "A word for bob", sender="alice", recipients=["bob"])
        )
        expect(bobs.locator("#badge")).to_have_text("1")
        # Sent after alice's: once bob's item shows, alice's would have too. It did not.
        expect(bobs.locator("#inbox li")).to_have_count(1)
        expect(bobs.locator("#inbox li .text")).to_have_text(["A word for bob (from alice)"])

        # The dropdown lists alice's items, newest first, unread ones marked.
        first.click("#bell")
        expect(first.locator("#dropdown")).to_be_visible()
        expect(first.locator("#inbox li .text")).to_have_text(
            ["From the command line (from cli)", "Welcome back (from bob)"]
        )
        expect(first.locator("#inbox li.unread")).to_have_count(2)

        # Marking one read in the first tab clears it in the second.
        first.locator("#inbox li", has_text="Welcome back").locator(".mark-read").click()
        for page in (first, second):
            expect(page.locator("#badge")).to_have_text("1")
        expect(second.locator("#inbox li.read .text")).to_have_text(["Welcome back (from bob)"])

        # Two more arrive; "mark all read" in the second tab clears both tabs.
        for title in ("Third", "Fourth"):
            notifications.send(Event(None, "chat", title, sender="bob", recipients=["alice"]))
        for page in (first, second):
            expect(page.locator("#badge")).to_have_text("3")
        second.click("#bell")
        second.click("#mark-all")
        for page in (first, second):
            expect(page.locator("#badge")).to_have_text("0")
            expect(page.locator("#inbox li.unread")).to_have_count(0)
        assert notifications.inbox("alice").unread_count() == 0
        expect(bobs.locator("#badge")).to_have_text("1")

        # A reload keeps the state: the server's, not the tab's.
        notifications.send(
            Event(None, "chat", "After the reload", sender="bob", recipients=["alice"])
        )
        expect(first.locator("#badge")).to_have_text("1")
        first.reload()
        expect(first.locator("#status")).to_have_text("live")
        expect(first.locator("#badge")).to_have_text("1")
        first.click("#bell")
        expect(first.locator("#inbox li")).to_have_count(5)
        expect(first.locator("#inbox li.unread .text")).to_have_text(
            ["After the reload (from bob)"]
        )

        # A screenshot of the open dropdown, for a person to look at.
        SCREENSHOT.parent.mkdir(exist_ok=True)
        first.screenshot(path=str(SCREENSHOT))
        assert SCREENSHOT.stat().st_size > 1000

        # Bob's badge never moved for any of alice's events; his list holds only his own.
        expect(bobs.locator("#badge")).to_have_text("1")
        bobs.reload()
        expect(bobs.locator("#status")).to_have_text("live")
        expect(bobs.locator("#badge")).to_have_text("1")
        expect(bobs.locator("#inbox li")).to_have_count(1)
        assert notifications.inbox("bob").unread_count() == 1


def test_the_preference_toggles_turn_the_bell_and_the_live_list_off_and_on(
    contexts: tuple[BrowserContext, BrowserContext], demo: Any
) -> None:
    app, notifications = demo()
    saves: list[str] = []
    third_came = threading.Event()
    overlapped: list[bool] = []  # whether the third save came while the second was held

    def second_save_is_slow() -> None:
        # The second save is held until the third reaches the server (2 s at most): a page
        # that sent both at once would have the older wish saved last.
        if request.method == "PUT" and request.path.endswith("/me/preferences"):
            saves.append(request.path)
            if len(saves) == 2:
                overlapped.append(third_came.wait(2.0))
            elif len(saves) == 3:
                third_came.set()

    app.before_request(second_save_is_slow)

    with serve(app) as base:
        page = open_as(contexts[0], base, "alice")
        for channel in ("inbox", "push", "digest"):
            expect(page.locator(f"#pref-{channel}")).to_be_checked()
            expect(page.locator(f"#pref-{channel}")).to_be_enabled()

        # The bell off: the event still shows live, and the badge does not move.
        page.uncheck("#pref-inbox")
        expect(page.locator("#prefs-status")).to_have_text("saved")
        assert notifications.preferences("alice") == {
            "*": {"inbox": False, "push": True, "digest": True}
        }
        notifications.send(
            Event(None, "chat", "Not in the bell", sender="bob", recipients=["alice"])
        )
        expect(page.locator("#mine li").last).to_contain_text("Not in the bell")
        expect(page.locator("#badge")).to_have_text("0")

        # The live list off, the bell on: the badge rises; the list does not show it.
        # Two changes in quick succession: "saved" only once both are, the newer one last
        # (sent together, the older could land last, and "saved" came with the first answer).
        page.check("#pref-inbox")
        page.uncheck("#pref-push")
        expect(page.locator("#prefs-status")).to_have_text("saved")
        assert notifications.preferences("alice") == {
            "*": {"inbox": True, "push": False, "digest": True}
        }
        assert len(saves) == 3 and overlapped == [False], "one save at a time"
        notifications.send(
            Event(None, "chat", "Only in the bell", sender="bob", recipients=["alice"])
        )
        expect(page.locator("#badge")).to_have_text("1")
        expect(page.locator("#mine li", has_text="Only in the bell")).to_have_count(0)

        # The toggles show what was saved after a reload.
        page.reload()
        expect(page.locator("#status")).to_have_text("live")
        expect(page.locator("#mine li", has_text="Not in the bell")).to_have_count(1)
        expect(page.locator("#mine li", has_text="Only in the bell")).to_have_count(0)
        expect(page.locator("#pref-push")).to_be_enabled()
        expect(page.locator("#pref-push")).not_to_be_checked()
        expect(page.locator("#pref-inbox")).to_be_checked()
        expect(page.locator("#badge")).to_have_text("1")


def test_the_demos_digest_lists_only_what_alice_left_unread(
    caplog: pytest.LogCaptureFixture, demo: Any
) -> None:
    caplog.set_level(logging.INFO, logger="notifycore.demo")
    notifications = demo()[1]
    registration = notifications.get_hub("Demo").get_registration("digest")
    digest = registration.consumer
    assert isinstance(digest, DigestConsumer)
    read = Event(None, "chat", "Read in the bell", sender="bob", recipients=["alice"])
    for event in (read, Event(None, "chat", "Left unread", sender="bob", recipients=["alice"])):
        notifications.send(event)
    worker = notifications.start_worker()
    wait_for(lambda: worker.counts[JobOutcome.DONE] == 2, 30, "the digest's collecting jobs")
    notifications.inbox("alice").mark_read([read.event_id])
    assert digest.fire_now("alice")
    wait_for(lambda: "digest for alice" in caplog.text, 30, "alice's digest in the log")
    assert "digest for alice: 1 unread notifications\n- Left unread (bob)" in caplog.text
    assert "Read in the bell" not in caplog.text
