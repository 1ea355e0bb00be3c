"""A page written for Flask-Notifications (``EventSource.onmessage``) in headless Chromium.

Frames are named after the event type, which ``onmessage`` never sees;
``named_events=False`` serves the unnamed frames such a page listens for, on
Flask and Starlette. Debian's chromium is installed by ./scripts/test;
without it this test fails, it never skips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, Page, expect
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

import notify_starlette
import notify_starlette.testing
from notify_flask import stream_blueprint
from notify_flask.testing import serve as serve_flask
from notifycore import Event, Notifications, PushConsumer

#: The original example's page (examples/simple/templates/sse.html), its jQuery written out.
OLD_PAGE = """<!DOCTYPE html>
<html>
    <head>
        <script type="text/javascript">
            window.onload = function() {
                sse = new EventSource('%(stream)s');
                sse.onmessage = function(message) {
                    console.log('A notification has arrived!');
                    var item = document.createElement('li');
                    item.textContent = message.data;
                    document.getElementById('output').appendChild(item);
                }
            }
        </script>
    </head>
    <body>
        <h2>Demo</h2>
        <ul id="output"></ul>
    </body>
</html>
"""

#: Both kinds of route side by side: named frames (the default) and unnamed ones.
STREAMS = {"named": "/notifications/event-hub-UserHub/stream", "unnamed": "/legacy/UserHub/stream"}
Site = Callable[[Notifications], AbstractContextManager[str]]


@contextmanager
def flask_site(notifications: Notifications) -> Iterator[str]:
    app = Flask("old_page")
    app.register_blueprint(stream_blueprint(notifications))
    # The one line that serves the old page: unnamed frames on a second blueprint.
    app.register_blueprint(
        stream_blueprint(notifications, name="legacy", url_prefix="/legacy", named_events=False)
    )
    app.add_url_rule("/<kind>", "page", lambda kind: OLD_PAGE % {"stream": STREAMS[kind]})
    with serve_flask(app) as base:
        yield base


@contextmanager
def starlette_site(notifications: Notifications) -> Iterator[str]:
    def page(request: Any) -> HTMLResponse:
        return HTMLResponse(OLD_PAGE % {"stream": STREAMS[request.path_params["kind"]]})

    app = Starlette(
        routes=[
            Mount("/notifications", app=notify_starlette.routes(notifications)),
            # The one line that serves the old page: unnamed frames on a second router.
            Mount("/legacy", app=notify_starlette.routes(notifications, named_events=False)),
            Route("/{kind}", page),
        ]
    )
    with notify_starlette.testing.serve(app) as base:
        yield base


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(url)
    # Open: the response's headers came, so the server subscribed this page already.
    page.wait_for_function("window.sse !== undefined && sse.readyState === EventSource.OPEN")
    return page


@pytest.mark.parametrize("site", [flask_site, starlette_site], ids=["flask", "starlette"])
def test_an_unchanged_onmessage_page_receives_the_unnamed_events(
    chromium: Browser, site: Site
) -> None:
    notifications = Notifications(config={"BACKEND": "memory"}, environ={})
    notifications.create_hub("UserHub").register_consumer(PushConsumer())
    try:
        with site(notifications) as base:
            old = open_page(chromium, f"{base}/unnamed")
            named = open_page(chromium, f"{base}/named")
            # The named route's page counts what addEventListener sees, as a control.
            named.evaluate(
                "window.seen = 0; sse.addEventListener('user', () => { window.seen += 1; })"
            )
            sent = Event(None, "user", "This is a user test", "the body", sender="john")
            notifications.send(sent)
            expect(old.locator("#output li")).to_have_count(1)
            assert old.locator("#output li").text_content() == sent.to_json()
            # The named page had the same frame (addEventListener saw it); onmessage did not.
            named.wait_for_function("window.seen === 1")
            expect(named.locator("#output li")).to_have_count(0)
            old.close()
            named.close()
    finally:
        notifications.close()
