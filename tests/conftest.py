"""Shared fixtures: a Notifications factory that ignores the developer's environment."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from playwright.sync_api import Browser, sync_playwright

from notifycore import Notifications

# No deadline for any property test: on a machine busy with other runs one example may take
# longer than Hypothesis's 200 ms default, and no test fails for being slow.
settings.register_profile("notifycore-tests", deadline=None)
settings.load_profile("notifycore-tests")


@pytest.fixture(autouse=True)
def _work_in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default backend writes notifycore.db in the working directory: keep it out of the tree."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_notifications() -> Iterator[Callable[..., Notifications]]:
    made: list[Notifications] = []

    def make(**config: Any) -> Notifications:
        config.setdefault("BACKEND", "memory")
        instance = Notifications(config=config, environ={})
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.close()


@pytest.fixture
def demo_database(tmp_path: Path) -> str:
    """The demo's SQLite URL in the test's directory (for a command line that sends to it)."""
    return f"sqlite:///{tmp_path / 'demo.db'}"


@pytest.fixture
def demo(demo_database: str) -> Iterator[Callable[[], tuple[Any, Notifications]]]:
    """The demo app on :func:`demo_database`, closed at the end however the test ended (a
    failed test left the demo's event log open, and a later test's ``gc.collect()`` failed
    on its ResourceWarning)."""
    from examples.demo.app import create_app

    made: list[Notifications] = []

    def make() -> tuple[Any, Notifications]:
        app, notifications = create_app(demo_database)
        made.append(notifications)
        return app, notifications

    yield make
    for notifications in made:
        notifications.close()


@pytest.fixture(params=["orjson", "stdlib"])
def json_paths(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test once with the JSON accelerator (orjson, from the test extra), once without."""
    from notifycore.event import json_accelerator, use_json_accelerator

    before = use_json_accelerator(request.param == "orjson")
    try:
        if request.param == "orjson":
            assert json_accelerator() == "orjson", "orjson (in the test extra) is not installed"
        else:
            assert json_accelerator() is None
        yield request.param
    finally:
        use_json_accelerator(before)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's headless chromium, driven by Playwright, one for a module (a test opens its
    own pages or contexts); fails (never skips) when it is missing."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail(
            "chromium is not installed: ./scripts/test installs it (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
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
            yield browser
        finally:
            browser.close()
