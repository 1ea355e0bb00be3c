"""Plugin discovery, hook wiring and named-driver resolution.

``tests/plugin_dist`` is a real distribution that the test command installs
into the test environment, so discovery goes through its entry points.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from notifycore import ConfigurationError, Event, Notifications, UnknownDriver, drivers, hookimpl
from notifycore.backends.memory import MemoryBackend
from notifycore.plugins import Plugins, get_plugins

Make = Callable[..., Notifications]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def test_installed_plugin_is_discovered_through_its_entry_point(make_notifications: Make) -> None:
    import notifycore_tinyplugin  # type: ignore[import-untyped]

    names = [info.name for info in get_plugins().list_plugins()]
    assert "tiny" in names and "notifycore.core_plugin" in names
    info = next(i for i in get_plugins().list_plugins() if i.name == "tiny")
    assert (info.distribution, info.version) == ("notifycore-tinyplugin", "0.0.7")
    n = make_notifications()
    e = Event(None, "t")
    n.send(e)
    assert notifycore_tinyplugin.SENT[-1] == e.event_id


def test_plugin_settings_are_declared_and_validated(make_notifications: Make) -> None:
    n = make_notifications(BACKEND="tiny", TINY_GREETING="bonjour")
    assert n.settings["TINY_GREETING"] == "bonjour"
    assert n.backend.greeting == "bonjour"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="TINY_GREETING .* must be str"):
        make_notifications(TINY_GREETING=3)


def test_plugins_load_once() -> None:
    plugins = Plugins()
    plugins.load()
    count = len(plugins.pm.get_plugins())
    plugins.load()
    assert len(plugins.pm.get_plugins()) == count


def test_disable_plugins_environment_variable_blocks_them() -> None:
    code = (
        "from notifycore.plugins import get_plugins;"
        "print(sorted(i.name for i in get_plugins().list_plugins()))"
    )
    normal = run_python(code)
    assert normal.returncode == 0, normal.stderr
    assert "'tiny'" in normal.stdout
    blocked = run_python(code, NOTIFYCORE_DISABLE_PLUGINS="tiny, other")
    assert blocked.returncode == 0, blocked.stderr
    assert "'tiny'" not in blocked.stdout and "notifycore.core_plugin" in blocked.stdout


def test_load_plugins_environment_variable_allows_only_those() -> None:
    code = (
        "from notifycore.plugins import get_plugins;"
        "print(sorted(i.name for i in get_plugins().list_plugins()))"
    )
    none = run_python(code, NOTIFYCORE_LOAD_PLUGINS="")
    assert none.returncode == 0, none.stderr
    assert none.stdout.strip() == "['notifycore.core_plugin']"
    only = run_python(code, NOTIFYCORE_LOAD_PLUGINS="tiny")
    assert "'tiny'" in only.stdout


def test_runtime_plugins_are_checked_for_misspelt_hooks() -> None:
    class Misspelt:
        @hookimpl
        def notifycore_after_sned(self) -> None: ...

    plugins = Plugins()
    from pluggy import PluginValidationError

    with pytest.raises(PluginValidationError, match="notifycore_after_sned"):
        plugins.register(Misspelt(), name="misspelt")


def test_before_and_after_hooks_see_each_send(make_notifications: Make) -> None:
    calls: list[str] = []

    class Spy:
        @hookimpl
        def notifycore_before_send(self, notifications: Any, event: Event) -> None:
            calls.append("before_send")

        @hookimpl
        def notifycore_before_consume(self, hub: Any, consumer: str, event: Event) -> None:
            calls.append(f"before_consume {consumer}")

        @hookimpl
        def notifycore_after_consume(self, hub: Any, consumer: str, event: Event) -> None:
            calls.append(f"after_consume {consumer}")

        @hookimpl
        def notifycore_after_send(self, notifications: Any, event: Event, result: Any) -> None:
            calls.append(f"after_send {result.hubs}")

    n = make_notifications()
    n.create_hub("H").register_consumer(lambda e: None, name="c")
    spy = Spy()
    get_plugins().register(spy, name="spy")
    try:
        n.send(Event(None, "t"))
    finally:
        get_plugins().unregister(spy)
    n.send(Event(None, "t"))
    assert calls == ["before_send", "before_consume c", "after_consume c", "after_send ['H']"]


def test_before_send_can_veto(make_notifications: Make) -> None:
    class Veto:
        @hookimpl
        def notifycore_before_send(self, notifications: Any, event: Event) -> None:
            if event.sender == "spammer":
                raise PermissionError("blocked sender")

    n = make_notifications()
    got: list[Event] = []
    n.create_hub("H").register_consumer(got.append, name="c")
    get_plugins().register(Veto(), name="veto")
    try:
        with pytest.raises(PermissionError):
            n.send(Event(None, "t", sender="spammer"))
        n.send(Event(None, "t", sender="friend"))
    finally:
        get_plugins().unregister(name="veto")
    assert [e.sender for e in got] == ["friend"]


def test_metric_hook_receives_counters(make_notifications: Make) -> None:
    from datetime import UTC, datetime, timedelta

    seen: list[tuple[str, float]] = []

    class Metrics:
        @hookimpl
        def notifycore_metric(self, name: str, value: float, tags: dict[str, str]) -> None:
            seen.append((name, value))

    n = make_notifications()
    get_plugins().register(Metrics(), name="metrics")
    try:
        n.send(Event(None, "t", expiration_datetime=datetime.now(UTC) - timedelta(1)))
    finally:
        get_plugins().unregister(name="metrics")
    assert seen == [("events.expired", 1)]


def test_init_app_without_an_adapter_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="no installed plugin can bind .*builtins.object"):
        Notifications(object(), config={"BACKEND": "memory"}, environ={})


def test_init_app_goes_to_the_first_plugin_that_claims_the_app() -> None:
    class App:
        pass

    class Adapter:
        @hookimpl
        def notifycore_init_app(self, notifications: Any, app: Any) -> bool | None:
            if isinstance(app, App):
                app.notifications = notifications  # type: ignore[attr-defined]
                return True
            return None

    get_plugins().register(Adapter(), name="adapter")
    try:
        app = App()
        n = Notifications(app, config={"BACKEND": "memory"}, environ={})
        assert app.notifications is n  # type: ignore[attr-defined]
    finally:
        get_plugins().unregister(name="adapter")


# -- drivers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "memory",
        "notifycore.backends.memory:MemoryBackend",
        "notifycore.backends.memory.MemoryBackend",
        MemoryBackend,
    ],
)
def test_backend_resolution_forms(make_notifications: Make, spec: Any) -> None:
    assert type(make_notifications(BACKEND=spec).backend) is MemoryBackend


def test_backend_from_a_plugin_entry_point(make_notifications: Make) -> None:
    from notifycore_tinyplugin import TinyBackend

    assert type(make_notifications(BACKEND="tiny").backend) is TinyBackend


def test_unknown_backend_lists_the_installed_names_and_suggests(make_notifications: Make) -> None:
    with pytest.raises(UnknownDriver) as info:
        make_notifications(BACKEND="memroy")
    message = str(info.value)
    assert "No such notifycore.backends driver: 'memroy'" in message
    installed = drivers.available(drivers.BACKENDS)
    assert {"memory", "sqlite", "tiny"} <= set(installed)
    assert f"installed: {', '.join(installed)})" in message
    assert "Did you mean 'memory'?" in message
    assert info.value.suggestions == ("memory",)
    assert isinstance(info.value, ConfigurationError)
    with pytest.raises(UnknownDriver) as far:
        make_notifications(BACKEND="zzzzzz")
    assert "Did you mean" not in str(far.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module.Thing", "cannot import 'no_such_module'"),
        ("notifycore.backends.memory:Nope", "has no attribute 'Nope'"),
        ("notifycore.event:Event", "not a Backend class"),
        (":Thing", "not a notifycore.backends name"),
    ],
)
def test_bad_dotted_backends(make_notifications: Make, spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_notifications(BACKEND=spec)


def test_consumer_drivers_resolve_by_name() -> None:
    from notifycore.consumers import LogConsumer

    assert drivers.resolve(drivers.CONSUMERS, "log") is LogConsumer
    shout = drivers.resolve(drivers.CONSUMERS, "shout")()
    shout.consume(Event(None, "t", "hi"))
    assert shout.heard == ["HI"]
    assert {"log", "push", "shout"} <= set(drivers.available(drivers.CONSUMERS))


def test_core_drivers_are_the_entry_points_the_core_declares() -> None:
    from importlib.metadata import entry_points

    for namespace, names in drivers.CORE_DRIVERS.items():
        declared = {
            ep.name: ep.value
            for ep in entry_points(group=namespace)
            if ep.dist is not None and ep.dist.name == "notifycore"
        }
        assert declared == dict(names)
        for name, target in names.items():
            module, _, attribute = target.partition(":")
            assert drivers.resolve(namespace, name) is getattr(sys.modules[module], attribute)


def test_a_worker_on_the_core_drivers_starts_without_reading_the_installed_plugins(
    tmp_path: Any,
) -> None:
    # Listing entry points reads every installed distribution: a worker process on the
    # default backend with NOTIFYCORE_LOAD_PLUGINS empty starts without it.
    (tmp_path / "app.py").write_text(
        "from notifycore import Notifications\n"
        "notifications = Notifications()\n"
        "notifications.create_hub('H').register_consumer(lambda e: None, name='c', mode='queued')\n"
    )
    code = (
        "import sys\n"
        "from notifycore.cli import main\n"
        "status = main(['worker', '--app', 'app', '--burst'])\n"
        "print(status, sorted(m for m in ('stevedore', 'importlib.metadata') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
            "NOTIFYCORE_LOAD_PLUGINS": "",
            "NOTIFYCORE_BACKEND_URL": f"sqlite:///{tmp_path / 'w.db'}",
        },
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0 []"


# -- the command ------------------------------------------------------------------------------


def test_plugins_command_lists_plugins_backends_and_consumers() -> None:
    from pathlib import Path

    script = Path(sys.executable).with_name("notifycore")
    done = subprocess.run([str(script), "plugins"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "tiny  (notifycore-tinyplugin 0.0.7)" in out
    assert "memory = notifycore.backends.memory:MemoryBackend  (notifycore 0.1.0)" in out
    assert "tiny = notifycore_tinyplugin:TinyBackend  (notifycore-tinyplugin 0.0.7)" in out
    assert "shout = notifycore_tinyplugin:ShoutConsumer" in out
    bad = subprocess.run([str(script), "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.fixture
def missing_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first-party backend whose distribution is not installed: 'ghost' from notify-ghost.

    The real ones (redis, amqp, mail) are installed here; tests/test_packaging.py checks
    them in a venv that has only the core.
    """
    monkeypatch.setitem(drivers.FIRST_PARTY_DRIVERS[drivers.BACKENDS], "ghost", "notify-ghost")
    monkeypatch.setitem(drivers.FIRST_PARTY_SETTINGS, "GHOST_", "notify-ghost")


def test_a_first_party_backend_that_is_not_installed_names_its_distribution(
    make_notifications: Make, missing_plugin: None
) -> None:
    with pytest.raises(UnknownDriver) as info:
        make_notifications(BACKEND="ghost")
    assert str(info.value).startswith(
        "The notifycore.backends driver 'ghost' comes with the notify-ghost distribution, "
        "which is not installed: pip install notify-ghost (installed: "
    )
    assert info.value.distribution == "notify-ghost"


def test_the_missing_backend_is_reported_before_its_unknown_settings(
    make_notifications: Make, missing_plugin: None
) -> None:
    with pytest.raises(UnknownDriver, match="pip install notify-ghost"):
        make_notifications(BACKEND="ghost", GHOST_URL="ghost://127.0.0.1")
    # The same with the backend chosen in the environment.
    with pytest.raises(UnknownDriver, match="pip install notify-ghost"):
        Notifications(config={"GHOST_URL": "x"}, environ={"NOTIFYCORE_BACKEND": "ghost"})


def test_a_setting_of_a_missing_plugin_names_its_distribution(
    make_notifications: Make, missing_plugin: None
) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_notifications(GHOST_URL="ghost://127.0.0.1")
    assert str(info.value) == (
        "unknown setting 'GHOST_URL' (from configuration): it is a setting of the notify-ghost "
        "distribution, which is not installed (pip install notify-ghost)"
    )


def test_installed_first_party_drivers_resolve_as_before() -> None:
    drivers.check_installed(drivers.BACKENDS, "redis")  # notify-redis is installed here
    assert drivers.setting_distribution("REDIS_URL") == "notify-redis"
    assert drivers.setting_distribution("MAIL_SERVER") == "notify-mail"
    assert drivers.setting_distribution("MAX_TRIES") is None


def test_an_extra_in_the_install_command_is_quoted_for_the_shell() -> None:
    error = UnknownDriver(drivers.CONSUMERS, "flask_mail", ["log"], (), "notify-mail[flask-mail]")
    assert "pip install 'notify-mail[flask-mail]'" in str(error)
