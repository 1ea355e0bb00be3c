"""``notifycore send`` on the demo app, from another process, as the demo tests use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTIFYCORE = str(Path(sys.executable).with_name("notifycore"))


def send_from_the_command_line(
    env: dict[str, str], cwd: Path, title: str, recipient: str | None = None
) -> None:
    """``notifycore send`` a chat event titled ``title`` (to ``recipient``, if one) through
    examples.demo.app in a process of its own; it must succeed."""
    command = [NOTIFYCORE, "send", "--app", "examples.demo.app:notifications"]
    command += ["--type", "chat", "--title", title]
    if recipient is not None:
        command += ["--recipient", recipient]
    sent = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
