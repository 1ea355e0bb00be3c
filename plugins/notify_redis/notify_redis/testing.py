"""A private redis-server on 127.0.0.1, for tests, examples and benchmarks.

``RedisServer(directory).start()`` runs ``redis-server`` on a free port and waits
until it answers; with ``persistent=True`` it writes an append-only file with
fsync on every write, so ``restart()`` keeps the data. Failing to start raises
``RuntimeError``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from notifycore.testing import free_port

__all__ = ["RedisServer"]


class RedisServer:
    """One redis-server process bound to 127.0.0.1."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed; ./scripts/test installs it "
                "(apt-get install -y redis-server)"
            )
        self.binary = binary
        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 15.0) -> None:
        durability = ("yes", "always") if self.persistent else ("no", "no")
        self.process = subprocess.Popen(
            [
                *(self.binary, "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--dir", str(self.directory), "--save", "", "--protected-mode", "yes"),
                *("--appendonly", durability[0], "--appendfsync", durability[1]),
                *("--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: redis-server flushes its data and exits
            process.wait(timeout=30)

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
