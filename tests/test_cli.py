"""The notifycore command line, run as real processes on a shared SQLite file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notifycore import Event, Notifications
from notifycore.cli import main

NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """A database and nothing that declares hubs."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }


@pytest.fixture
def env(bare_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A database, and a configuration (NOTIFYCORE_CONFIG) that declares the hub Chat."""
    config = tmp_path / "hubs.toml"
    config.write_text("[hubs.Chat]\n")
    return {**bare_env, "NOTIFYCORE_CONFIG": str(config)}


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOTIFYCORE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def start_tail(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [NOTIFYCORE, "tail", "Chat", "--format", "json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    ready = process.stderr.readline()  # "following ... after id N": the position is taken
    assert ready.startswith("notifycore: following event-hub-Chat"), ready
    return process


def test_send_reaches_tail_in_another_process_and_since_replays_exactly_the_missed(
    env: dict[str, str],
) -> None:
    tail = start_tail(env, "--count", "2", "--timeout", "60")
    try:
        for title in ("one", "two"):
            sent = run(
                env, "send", "--hub", "Chat", "--type", "chat", "--title", title, "--sender", "ann"
            )
            assert sent.returncode == 0, sent.stderr
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    first = [json.loads(line) for line in out.splitlines()]
    assert [m["event"]["title"] for m in first] == ["one", "two"]
    last_seen = first[-1]["id"]

    # While no tail runs, three more events are sent.
    for title in ("three", "four", "five"):
        assert run(env, "send", "--hub", "Chat", "--type", "chat", "--title", title).returncode == 0
    resumed = subprocess.run(
        [NOTIFYCORE, "tail", "Chat", "--format", "json", "--since", last_seen, "--timeout", "1.5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    missed = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert [m["event"]["title"] for m in missed] == ["three", "four", "five"]
    assert int(missed[0]["id"]) == int(last_seen) + 1


def test_tail_text_format_and_reset_notice(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "NOTIFYCORE_STREAM_MAXLEN": "2"}
    for title in ("a", "b", "c", "d"):
        assert (
            run(
                env, "send", "--hub", "Chat", "--type", "t", "--title", title, "--sender", "s"
            ).returncode
            == 0
        )
    done = run(env, "tail", "Chat", "--since", "1", "--count", "2")
    assert done.returncode == 0, done.stderr
    assert "reset:" in done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["3", "4"]
    assert lines[0].endswith("t s: c")


def test_send_through_an_app_uses_its_hubs(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "cli_app.py").write_text(
        "from notifycore import Notifications, PushConsumer\n"
        "from notifycore.filters import WithEventType\n"
        "notifications = Notifications()\n"
        "hub = notifications.create_hub('Chat')\n"
        "hub.filter_by(WithEventType('chat'))\n"
        "hub.register_consumer(PushConsumer(per_recipient=True))\n"
        "hub.register_consumer(print, name='later', mode='queued')\n"
    )
    done = subprocess.run(
        [
            NOTIFYCORE,
            "send",
            "--app",
            "cli_app",
            "--type",
            "chat",
            "--title",
            "hi",
            "--recipient",
            "bob",
            "--tag",
            "x",
            "--field",
            "room=42",
            "--field",
            "note=plain text",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Chat/notifycore.consumers.PushConsumer=ran, Chat/later=enqueued" in done.stdout
    skipped = subprocess.run(
        [NOTIFYCORE, "send", "--app", "cli_app:notifications", "--type", "other"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert skipped.stdout.strip().endswith("matched no hub")
    n = Notifications(config={"BACKEND_URL": env["NOTIFYCORE_BACKEND_URL"]}, environ={})
    try:
        (message,) = n.backend.read("user:bob").messages
        event = Event.from_json(message.data)
        assert (event.title, event.tags, event["room"], event["note"]) == (
            "hi",
            ("x",),
            42,
            "plain text",
        )
        assert n.backend.queue_length("notifycore") == 1
    finally:
        n.close()


def test_send_to_hubs_publishes_what_their_push_consumers_would_once_per_stream(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'push.db'}"
    monkeypatch.setenv("NOTIFYCORE_BACKEND_URL", url)
    monkeypatch.delenv("NOTIFYCORE_CONFIG", raising=False)
    # Nothing declares hubs: a hub id is taken as it is, and a label once its stream has events.
    # Broadcast explicitly: a private event goes to the hub's stream as well (once).
    args = ["send", "--hub", "event-hub-Chat", "--hub", "Chat", "--type", "t"]
    args.append("--broadcast-private")
    assert main([*args, "--recipient", "bob", "--recipient", "bob"]) == 1
    assert "no hub named 'Chat'" in capsys.readouterr().err
    assert main(["send", "--hub", "event-hub-Chat", "--type", "t", "--title", "first"]) == 0
    assert capsys.readouterr().out.endswith(" published to event-hub-Chat\n")
    assert main([*args, "--recipient", "bob", "--recipient", "bob"]) == 0
    assert capsys.readouterr().out.endswith(" published to event-hub-Chat, user:bob\n")
    assert main(["send", "--hub", "user:ann", "--type", "t"]) == 0  # a stream, not a hub
    n = Notifications(config={"BACKEND_URL": url}, environ={})
    try:
        assert len(n.backend.read("event-hub-Chat").messages) == 2
        assert len(n.backend.read("user:bob").messages) == 1
        assert len(n.backend.read("user:ann").messages) == 1
    finally:
        n.close()


def test_bulk_send_from_json_lines_on_stdin_shows_a_count(env: dict[str, str]) -> None:
    events = "\n".join(Event(None, "bulk", f"n{i}").to_json() for i in range(50))
    done = run(env, "send", "--hub", "Chat", "--json", "-", stdin=events)
    assert done.returncode == 0, done.stderr
    assert "sent: 50 events" in done.stderr
    tail = run(env, "tail", "Chat", "--since", "0", "--count", "50", "--format", "json")
    assert [json.loads(line)["event"]["title"] for line in tail.stdout.splitlines()] == [
        f"n{i}" for i in range(50)
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["send", "--hub", "Chat"], None, "give --type"),
        (["send", "--hub", "Chat", "--json", "-"], "{broken", "line 1: event: is not valid JSON"),
        (
            ["send", "--hub", "Chat", "--json", "-"],
            '{"title": "no type"}',
            "event_type: is required",
        ),
        (
            ["send", "--hub", "Chat", "--type", "t", "--expires", "tomorrow"],
            None,
            "expiration_datetime",
        ),
        (
            ["send", "--hub", "Chat", "--type", "t", "--field", "oops"],
            None,
            "--field takes key=value",
        ),
        (["send", "--hub", "Chat", "--json", "/no/such/file.json"], None, "No such file"),
        (["tail", "Chat", "--since", "not-an-id", "--count", "1"], None, "not a sqlite stream id"),
        (
            ["dead-letters", "list", "--config", "/no/such.toml"],
            None,
            "cannot read configuration file",
        ),
    ],
)
def test_errors_are_one_clear_line(
    env: dict[str, str], args: list[str], stdin: str | None, message: str
) -> None:
    done = run(env, *args, stdin=stdin)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("notifycore: error: "), done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_unknown_backend_from_the_environment(env: dict[str, str]) -> None:
    done = run({**env, "NOTIFYCORE_BACKEND": "sqlit"}, "dead-letters", "list")
    assert done.returncode == 1
    assert "No such notifycore.backends driver: 'sqlit'" in done.stderr
    assert "Did you mean 'sqlite'?" in done.stderr


@pytest.mark.parametrize("suffix", [".toml", ".ini", ".json"])
def test_config_files(tmp_path: Path, env: dict[str, str], suffix: str) -> None:
    db = tmp_path / f"from{suffix}.db"
    text = {
        ".toml": f'[notifycore]\nBACKEND = "sqlite"\nBACKEND_URL = "sqlite:///{db}"\nDEFAULT_QUEUE = "mail"\n',
        ".ini": f"[notifycore]\nbackend = sqlite\nbackend_url = sqlite:///{db}\ndefault_queue = mail\n",
        ".json": json.dumps({"BACKEND_URL": f"sqlite:///{db}", "DEFAULT_QUEUE": "mail"}),
    }[suffix]
    config = tmp_path / f"settings{suffix}"
    config.write_text(text)
    plain_env = {k: v for k, v in env.items() if not k.startswith("NOTIFYCORE_")}
    done = run(plain_env, "dead-letters", "list", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "0 dead letter(s) in queue 'mail'" in done.stderr
    assert db.exists()
    config.write_text("[notifycore]\nMAX_TRIES = 'lots'\n" if suffix == ".toml" else "{not valid")
    bad = run(plain_env, "dead-letters", "list", "--config", str(config))
    assert bad.returncode == 1 and bad.stderr.startswith("notifycore: error: ")


def test_dead_letters_list_requeue_and_purge(env: dict[str, str]) -> None:
    n = Notifications(config={"BACKEND_URL": env["NOTIFYCORE_BACKEND_URL"]}, environ={})
    backend = n.backend
    for payload in (b"one", b"two", b"three"):
        backend.enqueue("notifycore", payload)
        job = backend.reserve("notifycore", visibility_timeout=30)
        assert job is not None
        backend.dead_letter(job, error=f"broken {payload.decode()}")
    listed = run(env, "dead-letters", "list")
    assert listed.returncode == 0
    assert [line.split("\t")[2] for line in listed.stdout.splitlines()] == [
        "broken one",
        "broken two",
        "broken three",
    ]
    first_id = listed.stdout.split("\t", 1)[0]
    requeued = run(env, "dead-letters", "requeue", "--id", first_id)
    assert requeued.stdout.strip() == "requeued 1 dead letter(s) in queue 'notifycore'"
    job = backend.reserve("notifycore", visibility_timeout=30)
    assert job is not None and job.payload == b"one"
    purged = run(env, "dead-letters", "purge")
    assert purged.stdout.strip() == "purged 2 dead letter(s) from queue 'notifycore'"
    assert backend.dead_letters("notifycore") == []
    n.close()


def test_background_worker_in_the_web_process(tmp_path: Path) -> None:
    n = Notifications(
        config={"BACKEND_URL": f"sqlite:///{tmp_path / 'bg.db'}", "RETRY_BACKOFF": 0.01}, environ={}
    )
    hub = n.create_hub("H")
    done: list[str] = []
    hub.register_consumer(lambda e: done.append(e.title), name="c", mode="queued")
    worker = n.start_worker(concurrency=2)
    with pytest.raises(Exception, match="already running"):
        n.start_worker()
    for i in range(20):
        n.send(Event(None, "t", f"e{i}"))
    deadline = time.monotonic() + 60
    while len(done) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    n.stop_worker()
    assert sorted(done) == sorted(f"e{i}" for i in range(20))
    assert not worker.running
    assert n.worker is None
    n.send(Event(None, "t", "after stop"))  # no worker runs (asserted above): it stays queued
    assert "after stop" not in done
    assert n.backend.queue_length("notifycore") == 1
    n.close()


# -- check ------------------------------------------------------------------------------------

CHECKED = """
backend = "sqlite"
backend_url = "sqlite:///{db}"

[hubs.orders]
filter = {{ type = "event_type", values = ["order.created"] }}
listeners = ["audit", "live"]

[listeners.audit]
use = "log"
logger = "orders"
actions = ["create"]

[listeners.live]
use = "push"
mode = "queued"
queue = "live"

[listeners.stray]
use = "push"
"""


def test_check_prints_the_hubs_filters_and_listeners_and_touches_no_backend(
    tmp_path: Path, env: dict[str, str]
) -> None:
    db = tmp_path / "never-created.db"
    config = tmp_path / "app.toml"
    config.write_text(CHECKED.format(db=db))
    done = run(env, "check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"configuration: {config}",
        "backend: sqlite (notifycore.backends.sqlite:SQLiteBackend)",
        "hub orders  filter: WithEventType('order.created')",
        "  listener audit  use: log  mode: inline  filter: Field('action', 'create')"
        "  consumer: LogConsumer(<Logger orders (WARNING)>)",
        "  listener live  use: push  mode: queued (queue live)"
        "  consumer: PushConsumer(per_recipient=True)",
        "hub listeners  filter: Always()",
        "  listener stray  use: push  mode: inline  consumer: PushConsumer(per_recipient=True)",
        "ok: 2 hub(s), 3 listener(s)",
    ]
    assert not db.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('backend = "reddis"\n', "No such notifycore.backends driver: 'reddis'.*'redis'"),
        ('backend = "memory"\nmax_tries = "x"\n', "MAX_TRIES .*must be int"),
        ("[listeners.a]\nuse = 'lgo'\n", "listener 'a' .*Did you mean 'log'"),
        ("[hubs.h]\nlisteners = ['nope']\n", "hubs.h.listeners: unknown listener 'nope'"),
        ("[listeners.a]\nuse = 'log'\npath = 'x'\nmode = 'later'\n", "unknown mode 'later'"),
        ("backend = \n", "not valid toml"),
        ('backend = "notifycore.event:Event"\n', "not a Backend class"),
    ],
)
def test_check_fails_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["check", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("notifycore: error: ") and str(config) in err
    assert re.search(message, err), err


def test_check_needs_a_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFYCORE_CONFIG", raising=False)
    assert main(["check"]) == 1
    assert "give --config FILE" in capsys.readouterr().err
    assert main(["check", "--config", "/no/such/file.ini"]) == 1
    assert "cannot read configuration file" in capsys.readouterr().err


def test_check_reads_an_ini_file_and_the_environment_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "app.ini"
    config.write_text(
        "[app:main]\nnotifycore.backend = sqlite\nnotifycore.listeners = audit\n"
        "notifycore.listeners.audit.use = log\nnotifycore.listeners.audit.path = a.jsonl\n"
    )
    monkeypatch.setenv("NOTIFYCORE_BACKEND", "memory")
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "backend: memory (notifycore.backends.memory:MemoryBackend)" in out
    assert "  listener audit  use: log  mode: inline  consumer: LogConsumer('a.jsonl')" in out


def test_send_to_a_hub_keeps_private_events_off_its_stream(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The privacy rule of PushConsumer: recipients get it on their own streams, the hub not."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    send = ["send", "--hub", "event-hub-Chat", "--type", "chat"]
    assert main([*send, "--title", "for alice", "--recipient", "alice", "--recipient", "bob"]) == 0
    assert main([*send, "--title", "for carol", "--recipient", "carol", "--per-recipient"]) == 0
    assert main([*send, "--title", "for all"]) == 0
    announced = ["--title", "broadcast", "--recipient", "dave", "--broadcast-private"]
    assert main([*send, *announced]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" published to ", 1)[1] for line in lines] == [
        "user:alice, user:bob",
        "user:carol",
        "event-hub-Chat",
        "event-hub-Chat, user:dave",
    ]
    n = Notifications(config={"BACKEND_URL": env["NOTIFYCORE_BACKEND_URL"]}, environ={})
    try:

        def titles(stream: str) -> list[str]:
            return [Event.from_json(m.data).title for m in n.backend.read(stream).messages]

        assert titles("event-hub-Chat") == ["for all", "broadcast"]
        assert titles("user:alice") == titles("user:bob") == ["for alice"]
        assert titles("user:carol") == ["for carol"]
        assert titles("user:dave") == ["broadcast"]
    finally:
        n.close()
