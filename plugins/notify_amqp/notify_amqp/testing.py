"""A private RabbitMQ node on 127.0.0.1, for tests and benchmarks.

``RabbitServer(directory).start()`` runs ``rabbitmq-server`` with its own ports,
data directory and Erlang port mapper, all bound to 127.0.0.1, and waits until
it answers; ``restart()`` keeps its durable queues and streams;
``shutdown()`` stops the node and its port mapper; ``ctl(...)`` runs
``rabbitmqctl`` against it; ``with memory_alarm():`` raises the node's memory
alarm (RabbitMQ blocks publishers) and restores its watermark after. Failing to start raises ``RuntimeError`` with the
end of the node's log.

The node has a broker-side consumer timeout (``consumer_timeout``, one minute
by default, as docs/amqp.md recommends for a visibility timeout under a
minute); ``timeout_check`` makes RabbitMQ look for timed-out deliveries that
often instead of once a minute (``channel_tick_interval``), for tests that
want it to act within seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import amqp

from notifycore.testing import free_port, wait_for

__all__ = ["RabbitServer"]


def _server_binary() -> str:
    # Debian's /usr/sbin/rabbitmq-server wrapper switches to the rabbitmq user; the script
    # it wraps runs the node as whoever calls it, with the directories we give it.
    for candidate in ("/usr/lib/rabbitmq/bin/rabbitmq-server", shutil.which("rabbitmq-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "rabbitmq-server is not installed; ./scripts/test installs it "
        "(apt-get install -y rabbitmq-server)"
    )


class RabbitServer:
    """One RabbitMQ node of its own (ports, data, Erlang port mapper), all on 127.0.0.1.

    ``restart()`` keeps its data: queues and streams are durable.
    """

    def __init__(
        self,
        directory: Path,
        *,
        consumer_timeout: float = 60.0,
        timeout_check: float | None = None,
    ) -> None:
        self.binary = _server_binary()
        self.directory = directory
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = false\n"
            "log.file.level = warning\n"
            f"consumer_timeout = {max(int(consumer_timeout * 1000), 1)}\n"
        )
        # rabbitmq.conf cannot set how often channels look at their deliveries' age.
        tick = (
            ""
            if timeout_check is None
            else f"{{channel_tick_interval, {int(timeout_check * 1000)}}}"
        )
        (directory / "advanced.config").write_text(f"[{{rabbit, [{tick}]}}].\n")
        (directory / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(directory),
            "RABBITMQ_NODENAME": f"notifycore{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(directory / "rabbitmq.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
        }

    def ctl(self, *args: str, timeout: float = 120) -> str:
        """Run ``rabbitmqctl`` against this node; its output, or RuntimeError."""
        ctl = str(Path(self.binary).with_name("rabbitmqctl"))
        if not os.access(ctl, os.X_OK):
            ctl = shutil.which("rabbitmqctl") or ctl
        done = subprocess.run(
            [ctl, "-n", self.env["RABBITMQ_NODENAME"], *args],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args[0]} failed: {done.stderr or done.stdout}")
        return done.stdout

    def alarms(self) -> str:
        """The node's resource alarms, as ``rabbit_alarm:get_alarms()`` prints them."""
        return self.ctl("eval", "rabbit_alarm:get_alarms().")

    @contextlib.contextmanager
    def memory_alarm(self) -> Iterator[None]:
        """Raise the node's memory alarm (a watermark below what it uses: RabbitMQ blocks
        every connection that publishes) until the block ends, then put the watermark back
        as it was and wait until the alarm is gone."""
        before = self.ctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().").strip()
        absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", before)
        if absolute is None and re.fullmatch(r"\d+(\.\d+)?", before) is None:
            raise RuntimeError(f"cannot read the memory watermark to restore: {before!r}")
        self.ctl("set_vm_memory_high_watermark", "0.000001")
        try:
            wait_for(lambda: "memory" in self.alarms(), 30, "RabbitMQ's memory alarm")
            yield
        finally:
            if absolute is not None:
                self.ctl("set_vm_memory_high_watermark", "absolute", absolute.group(1))
            else:
                self.ctl("set_vm_memory_high_watermark", before)
            wait_for(lambda: "memory" not in self.alarms(), 30, "the memory alarm to clear")

    def _answers(self) -> bool:
        try:
            connection = amqp.Connection(
                f"127.0.0.1:{self.port}", userid="guest", password="guest", connect_timeout=1
            )
            connection.connect()
        except Exception:
            return False
        connection.close()
        return True

    def start(self) -> None:
        # What the node prints before its log files exist (an epmd or port failure) goes here.
        with open(self.directory / "console.out", "ab") as console:
            self.process = subprocess.Popen(
                [self.binary],
                env=self.env,
                cwd=self.directory,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                code = self.process.poll()
                log = "\n".join(
                    f"--- {p.name}\n" + p.read_text(errors="replace")[-2000:]
                    for p in [
                        self.directory / "console.out",
                        *(self.directory / "log").glob("*.log"),
                    ]
                    if p.exists()
                )
                self.stop()
                raise RuntimeError(
                    f"rabbitmq-server did not start on 127.0.0.1:{self.port} "
                    f"(exit status {code})\n{log}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the node shuts down cleanly on SIGTERM
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Wait until the port is free again, so a restart can bind it.
        deadline = time.monotonic() + 30
        while self._answers() and time.monotonic() < deadline:
            time.sleep(0.1)

    def shutdown(self) -> None:
        self.stop()
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if os.access(epmd, os.X_OK):
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
