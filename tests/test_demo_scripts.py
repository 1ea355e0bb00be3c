"""The demo as a newcomer starts it: a taken port, the log consumer's lines, no needless reinstall.

``python -m examples.demo`` and ``./scripts/demo`` run as real processes. The
virtualenv ``./scripts/demo`` uses is pointed elsewhere with ``NOTIFYCORE_VENV``:
a stand-in whose ``python`` runs this test's interpreter, so no test installs
anything or needs a package index.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from notifycore.testing import free_port, wait_for
from tests.demo_cli import ROOT, send_from_the_command_line

DEMO_INPUTS = [
    "pyproject.toml",
    "plugins/notify_flask/pyproject.toml",
    "plugins/notify_flask/build_backend.py",
]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")},
        "NOTIFYCORE_BACKEND_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "PYTHONPATH": str(ROOT),
    }


def test_a_taken_port_is_said_before_any_address_is_printed(
    env: dict[str, str], taken_port: int
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        env={**env, "PORT": str(taken_port)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""  # no "open http://..." for a server that never started
    assert done.stderr == (
        f"notifycore demo: port {taken_port} on 127.0.0.1 is already in use by another "
        f"program; stop that program, or choose another port: PORT={taken_port + 1} "
        "./scripts/demo\n"
    )


@contextmanager
def demo_serving(command: list[str], env: dict[str, str]) -> Iterator[list[str]]:
    """Run the demo (``command``, in the checkout) on a free port and yield, once it
    printed its address, the lines it printed (the list grows as it prints); then stop it
    with Ctrl-C, as a person does, which must end it with 0."""
    port = free_port()
    demo = subprocess.Popen(
        command,
        env={**env, "PORT": str(port)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    address = f"open http://127.0.0.1:{port}/"
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: demo.poll() is not None or any(address in line for line in lines),
            60,
            "the demo's address",
        )
        assert any(address in line for line in lines), lines
        yield lines
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            assert demo.wait(timeout=60) == 0, lines
        finally:
            demo.kill()
            reader.join(timeout=60)
            assert demo.stdout is not None
            demo.stdout.close()


def test_the_demo_terminal_prints_what_the_log_consumer_writes_from_any_process(
    env: dict[str, str], tmp_path: Path
) -> None:
    with demo_serving([sys.executable, "-m", "examples.demo"], env) as lines:
        # notifycore send in another process: its log consumer writes the line, the demo prints it.
        send_from_the_command_line(env, tmp_path, "Logged from the command line")
        wait_for(
            lambda: any(
                line.startswith("  log consumer: {") and "Logged from the command line" in line
                for line in lines
            ),
            60,
            "the log consumer's line in the demo's terminal",
        )
        assert (tmp_path / "notifycore-demo-events.jsonl").is_file()


# -- ./scripts/demo installs once ------------------------------------------------------------


def stand_in_venv(path: Path) -> Path:
    """A virtualenv whose python is this test's interpreter (notifycore and Flask installed)."""
    (path / "bin").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return path


def venv_shell(venv: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in bash after sourcing scripts/_venv.sh, with NOTIFYCORE_VENV=venv."""
    return subprocess.run(
        ["bash", "-c", f'source "{ROOT}/scripts/_venv.sh" && cd "{ROOT}" && {command}'],
        env={**os.environ, "NOTIFYCORE_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_scripts_demo_does_not_reinstall_when_nothing_changed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    venv = stand_in_venv(tmp_path / "venv")
    stamp = venv / ".notifycore-demo-installed"
    # What a finished installation leaves behind.
    written = venv_shell(venv, f'write_stamp "{stamp}" {" ".join(DEMO_INPUTS)}')
    assert written.returncode == 0, written.stderr
    # No pip at all: straight to the demo, which serves (NOTIFYCORE_VENV is no setting).
    with demo_serving(
        [str(ROOT / "scripts" / "demo")], {**env, "NOTIFYCORE_VENV": str(venv)}
    ) as lines:
        assert lines[0] == (
            f"==> notifycore and notify-flask are installed in {venv} (nothing changed)\n"
        )
        assert not any("installing" in line for line in lines)


def test_the_stamp_changes_with_what_the_installation_depends_on(tmp_path: Path) -> None:
    venv = stand_in_venv(tmp_path / "venv")
    stamp = tmp_path / "stamp"
    inputs = [tmp_path / "pyproject.toml", tmp_path / "other.toml"]
    for path in inputs:
        path.write_text('[project]\nname = "x"\n')
    names = " ".join(str(p) for p in inputs)

    def up_to_date() -> bool:
        return venv_shell(venv, f'up_to_date "{stamp}" {names}').returncode == 0

    assert not up_to_date()  # never installed
    assert venv_shell(venv, f'write_stamp "{stamp}" {names}').returncode == 0
    assert up_to_date()
    inputs[1].write_text('[project]\nname = "x"\ndependencies = ["flask"]\n')
    assert not up_to_date()  # a dependency was added: install again
    assert venv_shell(venv, f'write_stamp "{stamp}" {names}').returncode == 0
    assert up_to_date()
    (venv / "bin" / "python").unlink()
    assert not up_to_date()  # the virtualenv is gone
