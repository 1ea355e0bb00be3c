"""A private three-node RabbitMQ cluster on 127.0.0.1, for tests and benchmarks.

``RabbitClusterServers(directory).start()`` starts the nodes (``RabbitServer`` each, from
``notify_amqp.testing``) at once, joins the others to the first with ``rabbitmqctl
join_cluster`` and waits until every node lists every node as running. It offers the
failover URL ``amqp://a;amqp://b;amqp://c`` (kombu's form), stopping and starting a node,
the node that leads a quorum queue or stream, and ``shutdown()``. Failing to start, or a
condition that does not come true within its bound, raises ``RuntimeError``.

Findings, for whoever builds on this (RabbitMQ 3.10 on Erlang/OTP 25, Debian 12, the busy
2-core development machine):

- Erlang port mapper. A node registers with, and looks its peers up in, the epmd on
  ``ERL_EPMD_PORT`` of its own environment (Erlang's docs: "all nodes in a cluster must
  use the same epmd port number"), so the per-node epmd of ``RabbitServer`` cannot serve
  a cluster. The cluster shares one epmd on a free port: started here first (``epmd
  -daemon -port P -address 127.0.0.1``), so the nodes do not race to start it, and
  killed (``epmd -port P -kill``) after the last node stopped. Another cluster, or a
  lone ``RabbitServer``, on its own epmd port never sees these nodes.
- Names and ports. Node names are ``notifycore<amqp port>@localhost`` (short names), each
  node has its own AMQP port, distribution port (``RABBITMQ_DIST_PORT``) and data
  directory, as ``RabbitServer`` already sets up.
- Cookie. A node reads ``$HOME/.erlang.cookie``, and so does ``rabbitmqctl``; every
  ``RabbitServer`` has its own ``HOME``, so the harness writes one random cookie into
  each, mode 0400 (Erlang refuses a cookie file others can read). The cookie is never
  printed.
- CLI tools. ``/usr/lib/rabbitmq/bin/rabbitmqctl`` (Debian's ``/usr/sbin`` wrapper
  switches to the rabbitmq user) runs with the node's environment and ``-n <node>``. It
  boots an Erlang VM per call (0.4-1.6 s each on the busy machine) and listens for
  distribution on ``RABBITMQ_CTL_DIST_PORT_MIN..MAX`` (35672-35682 unless set), bound
  here to 127.0.0.1 through ``RABBITMQ_CTL_ERL_ARGS``.
- Joining. ``stop_app``, ``join_cluster <first node>``, ``start_app`` on each other node,
  one node after the other. ``rabbitmqctl cluster_status --formatter json`` lists
  ``running_nodes``.
- Leaders. ``rabbitmqctl list_queues name type leader members --formatter json`` names a
  quorum queue's or stream's leader and members (no management plugin needed). A quorum
  queue or stream declared on a three-node cluster gets all three as members; after a
  clean stop of its leader a survivor already leads it by the next look (one CLI call),
  and the queue keeps its confirmed messages.
- Failover URL. kombu tries the URLs of ``amqp://a;amqp://b;amqp://c`` in turn
  (round-robin): a closed ``Connection`` whose current node is down connects to the next
  one on ``ensure_connection()``.
- Stopping. SIGTERM stops a node cleanly; the others mark it down and it rejoins when
  started again with the same directory (it remembers the cluster). The last node
  stopped must be the first started again (RabbitMQ's rule), so a cluster is not
  started again after ``shutdown()``, which stops all nodes at once.

Timings observed (2 cores, load average 4-9 from other test suites; ``startup_seconds``
measures ``start()``): the three nodes booted side by side in 7.5-8 s (one alone in
5.5 s), the two joins took 4-5 s of rabbitmqctl calls, so a cluster was ready in
13-17 s. Stopping a node took about 1 s, starting it again until it was back in the
cluster 6-8 s, ``shutdown()`` about 1 s.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from notify_amqp.testing import RabbitServer
from notifycore.testing import free_port

__all__ = ["RabbitClusterServers"]

_BIN = Path("/usr/lib/rabbitmq/bin")


def _until(
    condition: Callable[[], bool], seconds: float, what: str, logs: Callable[[], str]
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds}s waiting for {what}\n{logs()}")
        time.sleep(0.2)


def _epmd() -> str:
    for candidate in (shutil.which("epmd"), "/usr/lib/erlang/bin/epmd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("epmd is not installed; it comes with rabbitmq-server (erlang-base)")


def _tool(name: str) -> str:
    path = _BIN / name
    if os.access(path, os.X_OK):
        return str(path)
    raise RuntimeError(
        f"{name} is not installed; ./scripts/test installs it (apt-get install -y rabbitmq-server)"
    )


class RabbitClusterServers:
    """``size`` RabbitMQ nodes in one cluster, all on 127.0.0.1.

    ``nodes`` are ``RabbitServer`` instances (``url``, ``port``, ``process``); the first
    is the one the others joined.
    """

    def __init__(self, directory: Path, *, size: int = 3) -> None:
        if size < 2:
            raise ValueError("a cluster needs at least two nodes")
        self.directory = directory
        self.epmd = _epmd()
        self.rabbitmqctl = _tool("rabbitmqctl")
        self.epmd_port = free_port()
        cookie = secrets.token_hex(20)
        self.nodes: list[RabbitServer] = []
        for index in range(size):
            node_dir = directory / f"node{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            node = RabbitServer(node_dir)
            node.epmd_port = self.epmd_port
            node.env["ERL_EPMD_PORT"] = str(self.epmd_port)
            node.env["RABBITMQ_CTL_ERL_ARGS"] = "-kernel inet_dist_use_interface {127,0,0,1}"
            cookie_file = node_dir / ".erlang.cookie"  # $HOME of the node and of rabbitmqctl
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
            self.nodes.append(node)
        #: seconds ``start()`` took, from starting epmd to a cluster of running nodes
        self.startup_seconds: float | None = None

    # -- names and addresses ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Every node's URL joined by ``;``: kombu's failover form."""
        return ";".join(node.url for node in self.nodes)

    @staticmethod
    def name(node: RabbitServer) -> str:
        """The node's Erlang name, ``notifycore<port>@localhost``."""
        return node.env["RABBITMQ_NODENAME"]

    def by_name(self, name: str) -> RabbitServer:
        for node in self.nodes:
            if self.name(node) == name:
                return node
        raise KeyError(name)

    def running(self) -> list[RabbitServer]:
        return [node for node in self.nodes if node.process is not None]

    # -- tools -----------------------------------------------------------------------------

    def ctl(self, node: RabbitServer, *args: str, timeout: float = 120.0) -> str:
        """``rabbitmqctl -n <node> args...``; its output, or ``RuntimeError`` on failure."""
        result = subprocess.run(
            [self.rabbitmqctl, "-n", self.name(node), *args],
            env=node.env,
            cwd=node.directory,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} on {self.name(node)} failed "
                f"({result.returncode}):\n{result.stdout[-1500:]}{result.stderr[-1500:]}"
            )
        return result.stdout

    def running_nodes(self, node: RabbitServer) -> set[str]:
        """The names ``node`` lists as running members of its cluster."""
        status = json.loads(self.ctl(node, "cluster_status", "--formatter", "json"))
        return set(status.get("running_nodes", []))

    def queues(self, node: RabbitServer | None = None, vhost: str = "/") -> dict[str, Any]:
        """Queue name -> ``{"type", "leader", "members"}``, as a running node lists them."""
        asked = node or self.running()[0]
        listed = json.loads(
            self.ctl(
                asked,
                *("list_queues", "-p", vhost, "name", "type", "leader", "members"),
                *("--formatter", "json", "--quiet"),
            )
        )
        return {row["name"]: row for row in listed}

    def leader(self, queue: str, vhost: str = "/") -> RabbitServer:
        """The node that leads the quorum queue or stream ``queue`` now."""
        row = self.queues(vhost=vhost).get(queue)
        if row is None or not row.get("leader"):
            raise RuntimeError(f"queue {queue!r} has no leader: {row!r}")
        return self.by_name(row["leader"])

    def wait_for_leader(
        self, queue: str, *, not_on: RabbitServer | None = None, seconds: float = 60.0
    ) -> RabbitServer:
        """Wait until ``queue`` has a leader on a running node (other than ``not_on``)."""
        found: list[RabbitServer] = []

        def led() -> bool:
            try:
                leader = self.leader(queue)
            except RuntimeError:
                return False
            if leader.process is None or leader is not_on:
                return False
            found.append(leader)
            return True

        _until(led, seconds, f"a leader for queue {queue!r}", self.logs)
        return found[-1]

    def logs(self) -> str:
        parts = []
        for node in self.nodes:
            for log in sorted((node.directory / "log").glob("*.log")):
                parts.append(f"--- {log}:\n{log.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, seconds: float = 180.0) -> None:
        began = time.monotonic()
        try:
            self._start_epmd()
            self._in_parallel(self.nodes, RabbitServer.start)
            first = self.nodes[0]
            for node in self.nodes[1:]:
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", self.name(first))
                self.ctl(node, "start_app")
            self.wait_clustered(seconds)
        except BaseException:
            self.shutdown()
            raise
        self.startup_seconds = time.monotonic() - began

    def wait_clustered(self, seconds: float = 120.0) -> None:
        """Wait until every running node answers AMQP and lists every running node."""
        running = self.running()
        expected = {self.name(node) for node in running}

        def clustered() -> bool:
            return all(node._answers() for node in running) and all(
                self.running_nodes(node) >= expected for node in running
            )

        _until(clustered, seconds, "the RabbitMQ nodes to form one cluster", self.logs)

    def stop(self, node: RabbitServer) -> None:
        """Stop one node cleanly (SIGTERM); the others carry on."""
        node.stop()

    def start_node(self, node: RabbitServer, seconds: float = 120.0) -> None:
        """Start a stopped node again and wait until it is back in the cluster."""
        node.start()
        self.wait_clustered(seconds)

    def shutdown(self) -> None:
        self._in_parallel([node for node in self.nodes if node.process], RabbitServer.stop)
        subprocess.run(
            [self.epmd, "-port", str(self.epmd_port), "-kill"],
            env=self.nodes[0].env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )

    def _start_epmd(self) -> None:
        env = self.nodes[0].env
        subprocess.run(
            [self.epmd, "-daemon", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=env,
            timeout=30,
            check=True,
        )

        def answers() -> bool:
            names = subprocess.run(
                [self.epmd, "-port", str(self.epmd_port), "-names"],
                env=env,
                capture_output=True,
                timeout=10,
                check=False,
            )
            return names.returncode == 0

        _until(answers, 30, f"epmd on 127.0.0.1:{self.epmd_port}", lambda: "")

    @staticmethod
    def _in_parallel(nodes: list[RabbitServer], action: Callable[[RabbitServer], None]) -> None:
        if not nodes:
            return
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            for future in [pool.submit(action, node) for node in nodes]:
                future.result()
