"""The notifycore command as a newcomer meets it: typos fail loudly, output behaves in pipes.

Every case runs the real ``notifycore`` command in a subprocess, on an SQLite
file of its own (issue 13, "The CLI").
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from notifycore import Event, Notifications

NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))

APP = """
from notifycore import Notifications, PushConsumer
notifications = Notifications()
hub = notifications.create_hub("Chat")
hub.register_consumer(PushConsumer())
@hub.register_consumer(name="later", mode="queued")
def later(event):
    pass
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "chat_app.py").write_text(APP)
    (tmp_path / "broken_app.py").write_text(
        "import json\n\ndef helper():\n    raise RuntimeError('the database is not configured')\n\nhelper()\n"
    )
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND_URL": f"sqlite:///{tmp_path / 'cli.db'}",
    }


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOTIFYCORE, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def backend_of(env: dict[str, str]) -> Notifications:
    return Notifications(config={"BACKEND_URL": env["NOTIFYCORE_BACKEND_URL"]}, environ={})


def one_error_line(done: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("notifycore: error: "), done.stderr
    return lines[0]


# -- a typo is an error, never a silent success ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["send", "--hub", "NoSuchHub", "--type", "t"],
            "no hub named 'NoSuchHub': no --app or --config declares hubs",
        ),
        (["tail", "NoSuchHub", "--timeout", "30"], "no hub named 'NoSuchHub'"),
        (["tail", "bad stream!", "--timeout", "30"], "'bad stream!' is not a hub label"),
        (["dead-letters", "requeue", "--id", "999"], "no dead letter with id 999 in queue"),
        (["dead-letters", "purge", "--id", "999"], "no dead letter with id 999 in queue"),
    ],
)
def test_typos_without_an_app(
    env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    line = one_error_line(run(env, *args, cwd=tmp_path))
    assert message in line
    n = backend_of(env)
    try:
        assert n.backend.last_id("event-hub-NoSuchHub") is None  # nothing was published
    finally:
        n.close()


@pytest.mark.parametrize(
    "args",
    [
        ["send", "--app", "chat_app", "--hub", "Caht", "--type", "t"],
        ["send", "--app", "chat_app", "--hub", "event-hub-Caht", "--type", "t"],
        ["tail", "--app", "chat_app", "Caht", "--timeout", "30"],
    ],
)
def test_typos_of_an_apps_hub_suggest_the_hub(
    env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    line = one_error_line(run(env, *args, cwd=tmp_path))
    assert "no hub named" in line and "(hubs: Chat); did you mean 'Chat'?" in line


def test_a_stream_named_in_full_and_a_label_with_events_are_accepted(
    env: dict[str, str], tmp_path: Path
) -> None:
    first = run(env, "send", "--hub", "event-hub-Chat", "--type", "t", "--title", "one")
    assert first.returncode == 0, first.stderr
    # Now the label's stream has events: the label is known, without any app or config.
    again = run(env, "send", "--hub", "Chat", "--type", "t", "--title", "two")
    assert again.returncode == 0, again.stderr
    mine = run(env, "send", "--app", "chat_app", "--hub", "user:ann", "--type", "t", cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    tail = run(env, "tail", "Chat", "--since", "0", "--count", "2", "--format", "json")
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(x)["event"]["title"] for x in tail.stdout.splitlines()] == ["one", "two"]


def test_requeue_of_a_missing_id_among_real_ones_changes_nothing(env: dict[str, str]) -> None:
    n = backend_of(env)
    try:
        n.backend.enqueue("notifycore", b"job")
        job = n.backend.reserve("notifycore", visibility_timeout=30)
        assert job is not None
        n.backend.dead_letter(job, error="broken")
        (letter,) = n.backend.dead_letters("notifycore")
        line = one_error_line(run(env, "dead-letters", "requeue", "--id", letter.id, "--id", "999"))
        assert "no dead letter with id 999" in line
        assert [d.id for d in n.backend.dead_letters("notifycore")] == [letter.id]
        assert n.backend.queue_length("notifycore") == 0
    finally:
        n.close()


# -- send --config FILE sends through the hubs it declares --------------------------------------


def test_send_with_a_config_file_uses_its_hubs(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    config = tmp_path / "app.toml"
    config.write_text(
        f"""
[hubs.Orders]
filter = {{ type = "event_type", values = ["order"] }}
listeners = ["audit"]

[listeners.audit]
use = "log"
path = "{log}"
"""
    )
    done = run(env, "send", "--config", str(config), "--type", "order", "--title", "Paid")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    event_id, summary = line.split(" ", 1)
    assert summary == "Orders/audit=ran"
    (written,) = log.read_text().splitlines()
    assert json.loads(written)["event_id"] == event_id
    assert json.loads(written)["sender"] == "cli"  # the default sender
    typo = run(env, "send", "--config", str(config), "--hub", "Order", "--type", "order")
    assert "did you mean 'Orders'?" in one_error_line(typo)


def test_send_with_nothing_to_receive_the_event(env: dict[str, str]) -> None:
    assert "nothing would receive the event" in one_error_line(run(env, "send", "--type", "t"))


# -- options and output ------------------------------------------------------------------------


def test_version() -> None:
    done = subprocess.run([NOTIFYCORE, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout == f"notifycore {metadata.version('notifycore')}\n"


@pytest.mark.parametrize("option", ["--concurrency", "-c"])
def test_a_bad_number_says_what_was_expected(env: dict[str, str], option: str) -> None:
    done = run(env, "worker", option, "abc")
    assert done.returncode == 2
    assert "invalid positive integer: 'abc'" in done.stderr
    assert "_positive" not in done.stderr
    zero = run(env, "worker", option, "0")
    assert zero.returncode == 2 and "invalid positive integer: '0'" in zero.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["plugins"],
        ["send", "--hub", "event-hub-Chat", "--type", "t"],
        ["--version"],
    ],
)
def test_a_closed_pipe_ends_quietly(env: dict[str, str], args: list[str]) -> None:
    # The reading end is closed before the command starts: its first write meets a broken pipe,
    # as `notifycore plugins | head` does once head has gone.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [NOTIFYCORE, *args],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode in (0, 1)


def test_send_json_prints_each_event_id_and_the_count_once(env: dict[str, str]) -> None:
    events = [Event(None, "bulk", f"n{i}") for i in range(3)]
    done = run(
        env,
        "send",
        "--hub",
        "event-hub-Chat",
        "--json",
        "-",
        stdin="\n".join(e.to_json() for e in events),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{e.event_id} published to event-hub-Chat" for e in events]
    assert done.stderr.splitlines() == ["sent: 3 events (of 3)"]


def test_an_app_that_raises_at_import_is_one_line_unless_traceback_is_asked(
    env: dict[str, str], tmp_path: Path
) -> None:
    short = one_error_line(run(env, "send", "--app", "broken_app", "--type", "t", cwd=tmp_path))
    assert (
        "importing the app module 'broken_app' raised RuntimeError: the database is not "
        "configured (--traceback shows where)"
    ) in short
    full = run(env, "send", "--app", "broken_app", "--type", "t", "--traceback", cwd=tmp_path)
    assert full.returncode == 1
    assert full.stderr.startswith("Traceback (most recent call last):")
    assert 'broken_app.py", line 4, in helper' in full.stderr
    assert full.stderr.strip().splitlines()[-1] == short


# -- progress ----------------------------------------------------------------------------------


def dead_letters(env: dict[str, str], count: int) -> None:
    n = backend_of(env)
    try:
        backend = n.backend
        backend.enqueue_many("notifycore", [f"job {i}".encode() for i in range(count)])
        for job in backend.reserve_many("notifycore", count, visibility_timeout=60):
            backend.dead_letter(job, error="broken")
        assert len(backend.dead_letters("notifycore")) == count
    finally:
        n.close()


def run_on_a_terminal(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> tuple[int, str, str]:
    """Run the command with its standard error on a pseudo-terminal; (status, stdout, stderr)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [NOTIFYCORE, *args], env=env, stdout=subprocess.PIPE, stderr=slave, text=False, cwd=cwd
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command has exited and the terminal is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    out, _ = process.communicate(timeout=120)
    return process.returncode, out.decode(), b"".join(chunks).decode()


def test_requeueing_thousands_shows_progress(env: dict[str, str]) -> None:
    dead_letters(env, 1200)
    done = run({**env, "NOTIFYCORE_PROGRESS_EVERY": "0"}, "dead-letters", "requeue")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "requeued 1200 dead letter(s) in queue 'notifycore'\n"
    # Not a terminal: a line now and then (here at every batch), the last one the total.
    assert done.stderr.splitlines() == [
        "requeued: 500 dead letters (of 1200)",
        "requeued: 1000 dead letters (of 1200)",
        "requeued: 1200 dead letters (of 1200)",
    ]


def test_requeueing_thousands_on_a_terminal_rewrites_one_line(env: dict[str, str]) -> None:
    dead_letters(env, 1100)
    status, out, err = run_on_a_terminal(env, "dead-letters", "requeue")
    assert status == 0, err
    assert out == "requeued 1100 dead letter(s) in queue 'notifycore'\n"
    assert err.startswith("\rrequeued: 500 dead letters (of 1100)")
    assert err.endswith("\rrequeued: 1100 dead letters (of 1100)\r\n")  # the tty's \r\n


def send_jobs(env: dict[str, str], cwd: Path, count: int) -> None:
    events = "\n".join(Event(None, "t", f"n{i}").to_json() for i in range(count))
    sent = run(env, "send", "--app", "chat_app", "--json", "-", stdin=events, cwd=cwd)
    assert sent.returncode == 0, sent.stderr


def test_a_burst_worker_shows_its_progress(env: dict[str, str], tmp_path: Path) -> None:
    send_jobs(env, tmp_path, 300)
    done = run(
        {**env, "NOTIFYCORE_PROGRESS_EVERY": "0"},
        "worker",
        "--app",
        "chat_app",
        "--burst",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    counts = [
        int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("jobs: ")
    ]
    assert counts == list(range(1, 301))  # every change, in order, up to the whole queue

    send_jobs(env, tmp_path, 50)
    status, _, err = run_on_a_terminal(env, "worker", "--app", "chat_app", "--burst", cwd=tmp_path)
    assert status == 0, err
    assert "\rjobs: 1 done" in err  # rewritten in place from the first job on
    assert err.endswith("\rjobs: 50 done\r\n")
