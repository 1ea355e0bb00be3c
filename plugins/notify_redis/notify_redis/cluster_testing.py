"""Private multi-node Redis on 127.0.0.1 for tests and benchmarks: a Redis Cluster, and a
master with a replica watched by three Sentinels.

``RedisClusterServers(directory, masters=3, replicas=1).start()`` runs one ``redis-server
--cluster-enabled yes`` per node, creates the cluster with ``redis-cli --cluster create``
and waits until every node agrees on it; ``RedisSentinelServers(directory).start()`` runs
a master, its replica and three ``redis-server --sentinel`` processes and waits until each
Sentinel knows the replica and the other Sentinels. Both offer the URL issue 16 specifies
(``redis+cluster://h:p,h:p/``, ``redis+sentinel://h:p,h:p,h:p/<service>/<db>``), killing,
stopping and restarting a node, and waiting for the failover that follows. Failing to
start, or a condition that does not come true within its bound, raises ``RuntimeError``
with the end of the nodes' logs.

Findings, for whoever builds the cluster and sentinel backends on these (measured on the
busy 2-core development machine, several test suites running beside it):

- Ports. Every cluster node needs a client port and a cluster-bus port. Redis' default bus
  port is port + 10000, which is nobody's free port; ``--cluster-port`` (Redis 7.0+)
  gives each node a bus port of its own, picked with ``free_port()`` like the client port.
- Addresses. Every node binds 127.0.0.1 and announces ``--cluster-announce-ip
  127.0.0.1``, so ``CLUSTER NODES``/``CLUSTER SLOTS`` (what redis-py's ``RedisCluster``
  follows) and MOVED answers name loopback addresses only. Sentinels and their
  ``sentinel monitor`` line use the IP too: with a host name, Sentinel needs ``sentinel
  resolve-hostnames yes`` (and ``announce-hostnames``), which these harnesses avoid.
- ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`` takes the first
  N addresses as masters, warns that replicas share a host with their masters (all do
  here) and goes on; it waits for the nodes to agree ("Waiting for the cluster to join")
  in one-second steps. The roles are read back from ``CLUSTER NODES`` rather than
  assumed. ``cluster_state:ok`` on one node is not enough: "ready" here means every node
  reports ``cluster_state:ok``, knows every node, none flagged ``fail``/``pfail``/
  ``handshake``, all have the same view of roles and slots, and every replica's link to
  its master is up.
- Failover. ``--cluster-node-timeout`` (default 2000 ms here, 15000 ms in Redis) bounds
  how soon a dead master is noticed; ``--cluster-replica-validity-factor 0`` lets a
  replica take over however long it was cut off. A restarted old master comes back as a
  replica of the promoted node (it reads its ``nodes.conf``, so a node keeps its ports
  and directory across restarts). Once a master is marked failed and until its replica
  took over, every node answers CLUSTERDOWN for every key, not only the dead master's
  (``cluster-require-full-coverage yes``, the default): observed from 3.0 s to 3.9 s
  after the SIGKILL, writes to another master's keys included.
- Replica sync. Redis 7 replicates "diskless" and by default waits
  ``repl-diskless-sync-delay`` 5 s for more replicas before it starts; ``0`` here took
  5 s off every start and every rejoin.
- Sentinel mode needs no ``redis-sentinel`` package: Debian's ``redis-server`` binary
  runs ``redis-server <conf> --sentinel``. Sentinel rewrites its configuration file at
  start and on every change, so each Sentinel gets a file of its own, writable. Sentinels
  find the replica through the master's ``INFO`` when they connect (then every 10 s), so
  the replica is attached before the Sentinels start; they find each other through hello
  messages on the master (every 2 s). ``down-after-milliseconds`` 3000 and
  ``failover-timeout`` 5000 are set here; Redis' defaults (30 s, 180 s) would make tests
  wait minutes.
- Not below 3000: Sentinel opens a new link to a just-promoted master, reconnects at
  most once a second, and counts the wait for the first PONG against
  ``down-after-milliseconds``. With 1000, one Sentinel in twelve failovers flagged the
  new master down a second after promoting it and started a second failover (aborted:
  no good replica); every Sentinel that voted then refuses to start another failover
  for ``2 * failover-timeout``, so a test that killed the new master soon after waited
  that much longer.
- Sentinel's own periods are constants, but ``SENTINEL DEBUG INFO-PERIOD 1000
  PUBLISH-PERIOD 500`` (Redis 7.0+, at run time, not saved) changes them; the harness
  sets these two (``info_period_ms``, ``publish_period_ms``; ``None`` keeps Redis' 10 s
  and 2 s). They make the Sentinels find each other and the replicas sooner, and shorten
  the stale-master window below.
- A stale master: a killed master started again as it was configured (a master) keeps
  answering as a master until the Sentinels turn it into a replica (``+convert-to-slave``
  in their logs). They do that only once it has claimed to be master for 4 publish
  periods and they read its ``INFO`` (every info period): 20-23 s with Redis' periods,
  4 s with the harness's. ``restart(node)`` avoids the window by starting the node with
  ``--replicaof`` the new master; ``restart(node, as_replica=False)`` opens it on
  purpose (where clients meet ``READONLY`` after the conversion).
- redis-py: its default retry policy retries a refused connection for seconds, which
  turns every probe of a dead node into a wait; ``RedisNode.client()`` disables it.
  redis-py may speak RESP3, where Sentinel answers maps instead of flat lists.
- Replication is asynchronous in both topologies: a write acknowledged by a master is
  lost when the master dies before its replica got it. ``WAIT 1 <ms>`` on the same
  connection after the write closes that window for the write.

Timings observed (2 cores, load average 1-9 from other test suites; ``startup_seconds``
on each harness measures its start):

- Cluster of 3 masters + 3 replicas: started and settled in 2.1-4.2 s (3 masters alone:
  2.1 s), of which ``redis-cli --cluster create`` took 2 s (it polls the join in
  one-second steps). SIGKILL of a master to the replica promoted and all nodes agreeing:
  3.6-4.1 s. The killed node restarted and settled as a replica: 4.5 s.
- Sentinel (master, replica, 3 Sentinels): started and watched in 0.6-1.7 s (2.2 s with
  Redis' own periods). SIGKILL of the master to every Sentinel naming the promoted
  replica: 4.3-5.2 s (2.0-3.0 s with ``down-after-milliseconds`` 1000). The old master
  restarted as a replica and seen by all Sentinels: 1.0-1.2 s; restarted as a stale
  master until converted: 3.8-4.2 s (20-23 s with Redis' own periods).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from notifycore.testing import free_port

__all__ = [
    "ClusterView",
    "RedisClusterServers",
    "RedisNode",
    "RedisSentinelServers",
    "Traffic",
]

HOST = "127.0.0.1"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed; ./scripts/test installs it (apt-get install -y redis-server)"
        )
    return path


def _until(
    condition: Callable[[], bool], seconds: float, what: str, logs: Callable[[], str]
) -> None:
    """Poll ``condition`` until it holds; ``RuntimeError`` with the nodes' logs after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds}s waiting for {what}\n{logs()}")
        time.sleep(0.1)


class RedisNode:
    """One ``redis-server`` process on 127.0.0.1 with its own port, directory and log.

    ``extra_args`` follow the common ones (``--sentinel`` turns it into a Sentinel, with
    ``config`` as its configuration file). ``kill()``/``stop()`` end it, ``start()``
    runs it again with the same port, directory and arguments.
    """

    def __init__(
        self,
        directory: Path,
        extra_args: Sequence[str] = (),
        *,
        config: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.binary = _binary("redis-server")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.extra_args = list(extra_args)
        self.config = config
        self.log = directory / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return HOST

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def __repr__(self) -> str:
        return f"<RedisNode {self.address}>"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process without waiting for it to answer (see ``wait_started``)."""
        if self.running:
            raise RuntimeError(f"redis-server on {self.address} is already running")
        self.process = subprocess.Popen(
            [
                self.binary,
                *([str(self.config)] if self.config is not None else []),
                *("--bind", HOST, "--port", str(self.port), "--dir", str(self.directory)),
                *("--logfile", str(self.log), "--daemonize", "no"),
                *self.extra_args,
            ],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self, **options: object) -> redis.Redis:
        """A redis-py client on this node only: answers decoded to ``str``, and no retries
        (redis-py's default retries a refused connection for seconds), unless overridden."""
        kwargs: dict[str, object] = {
            "socket_connect_timeout": 1.0,
            "socket_timeout": 5.0,
            "decode_responses": True,
            "retry": Retry(NoBackoff(), 0),
            **options,
        }
        return redis.Redis(host=HOST, port=self.port, **kwargs)  # type: ignore[arg-type]

    def command(self, *args: str | int) -> object:
        """One command on a fresh connection; ``None`` if the node does not answer."""
        client = self.client()
        try:
            reply: object = client.execute_command(*args)  # type: ignore[no-untyped-call]
            return reply
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        finally:
            client.close()

    def answers(self) -> bool:
        return self.command("PING") is True

    def wait_started(self, seconds: float = 30.0) -> None:
        def up() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on {self.address} exited\n{self.log_tail()}")
            return self.answers()

        _until(up, seconds, f"redis-server on {self.address} to answer", self.log_tail)

    def start(self, seconds: float = 30.0) -> None:
        self.spawn()
        self.wait_started(seconds)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def log_tail(self, chars: int = 1500) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return f"--- {self.address}: no log"
        return f"--- {self.address} ({self.log}):\n{text[-chars:]}"


def _in_parallel(nodes: Iterable[RedisNode], action: Callable[[RedisNode], None]) -> None:
    nodes = list(nodes)
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        for future in [pool.submit(action, node) for node in nodes]:
            future.result()


# --- Redis Cluster ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterView:
    """One node's view of the cluster, from ``CLUSTER NODES``: who serves what."""

    #: address -> "master" or "replica"
    roles: dict[str, str]
    #: replica address -> its master's address
    masters_of: dict[str, str]
    #: master address -> the slot ranges it serves, as written by CLUSTER NODES
    slots: dict[str, tuple[str, ...]]
    #: addresses flagged fail, pfail or handshake, or not connected
    troubled: frozenset[str]

    def agrees_with(self, other: ClusterView) -> bool:
        return (self.roles, self.masters_of, self.slots) == (
            other.roles,
            other.masters_of,
            other.slots,
        )


def parse_cluster_nodes(text: str) -> ClusterView:
    """``CLUSTER NODES`` output as a ``ClusterView`` (node ids replaced by addresses)."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    # <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
    address_of = {row[0]: row[1].split("@")[0] for row in rows}
    roles: dict[str, str] = {}
    masters_of: dict[str, str] = {}
    slots: dict[str, tuple[str, ...]] = {}
    troubled: set[str] = set()
    for node_id, _, flags, master, _ping, _pong, _epoch, link, *served in rows:
        address = address_of[node_id]
        flag_set = set(flags.split(","))
        if flag_set & {"fail", "fail?", "handshake", "noaddr"} or link != "connected":
            troubled.add(address)
        if "master" in flag_set:
            roles[address] = "master"
            slots[address] = tuple(sorted(s for s in served if not s.startswith("[")))
        elif "slave" in flag_set:
            roles[address] = "replica"
            masters_of[address] = address_of.get(master, master)
    return ClusterView(roles, masters_of, slots, frozenset(troubled))


class RedisClusterServers:
    """A Redis Cluster of ``masters`` masters with ``replicas`` replicas each, on 127.0.0.1.

    ``nodes`` are all of them in creation order (masters first); ``masters()`` and
    ``replicas()`` say who holds which role now, which changes with failovers.
    """

    def __init__(
        self,
        directory: Path,
        *,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        persistent: bool = False,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.directory = directory
        self.replicas_per_master = replicas
        self.redis_cli = _binary("redis-cli")
        durability = ("yes", "always") if persistent else ("no", "no")
        self.nodes: list[RedisNode] = []
        for index in range(masters * (1 + replicas)):
            self.nodes.append(
                RedisNode(
                    directory / f"node{index}",
                    [
                        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                        *("--cluster-port", str(free_port())),
                        *("--cluster-node-timeout", str(node_timeout_ms)),
                        *("--cluster-announce-ip", HOST),
                        *("--cluster-replica-validity-factor", "0"),
                        *("--save", "", "--protected-mode", "yes"),
                        *("--repl-diskless-sync-delay", "0"),
                        *("--appendonly", durability[0], "--appendfsync", durability[1]),
                    ],
                )
            )
        #: seconds ``start()`` took, from spawning the first process to a ready cluster
        self.startup_seconds: float | None = None
        #: the view of the last time the cluster was found healthy
        self.last_view: ClusterView | None = None

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis+cluster://h:p,h:p,.../`` naming every node (issue 16's form)."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes) + "/"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    def node(self, address: str) -> RedisNode:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, seconds: float = 90.0) -> None:
        began = time.monotonic()
        try:
            for node in self.nodes:
                node.spawn()
            _in_parallel(self.nodes, lambda node: node.wait_started(seconds))
            create = subprocess.run(
                [
                    *(self.redis_cli, "--cluster", "create"),
                    *(node.address for node in self.nodes),
                    *("--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"),
                ],
                capture_output=True,
                text=True,
                timeout=seconds,
                check=False,
            )
            if create.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed:\n{create.stdout[-2000:]}"
                    f"{create.stderr[-2000:]}\n{self.logs()}"
                )
            self.wait_ready(seconds)
        except BaseException:
            self.shutdown()
            raise
        self.startup_seconds = time.monotonic() - began

    def shutdown(self) -> None:
        _in_parallel(self.nodes, RedisNode.kill)

    def logs(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)

    # -- state -----------------------------------------------------------------------------

    def view(self, node: RedisNode) -> ClusterView | None:
        text = node.command("CLUSTER", "NODES")
        return parse_cluster_nodes(text) if isinstance(text, str) else None

    def _state_ok(self, node: RedisNode) -> bool:
        text = node.command("CLUSTER", "INFO")
        return isinstance(text, str) and "cluster_state:ok" in text

    def _replica_linked(self, node: RedisNode) -> bool:
        text = node.command("INFO", "replication")
        # INFO is parsed by redis-py into a dict even through execute_command.
        return isinstance(text, dict) and text.get("master_link_status") == "up"

    def settled_view(self) -> ClusterView | None:
        """The view every live node shares when the cluster is healthy, else ``None``.

        Healthy: every live node answers ``cluster_state:ok``, shares one view of roles
        and slots, flags none of the live nodes, knows all of them, and every live
        replica's link to its master is up.
        """
        live = [node for node in self.nodes if node.running]
        views = [self.view(node) for node in live]
        if any(view is None for view in views):
            return None
        first = views[0]
        assert first is not None
        addresses = {node.address for node in live}
        for view in views:
            assert view is not None
            if not view.agrees_with(first) or view.troubled & addresses:
                return None
            if not addresses <= set(view.roles):
                return None
        if sum(len(ranges) for ranges in first.slots.values()) == 0:
            return None
        for node in live:
            if not self._state_ok(node):
                return None
            if first.roles.get(node.address) == "replica" and not self._replica_linked(node):
                return None
        return first

    def wait_ready(self, seconds: float = 60.0) -> ClusterView:
        """Wait until every running node agrees on a healthy cluster (``settled_view``)."""
        found: list[ClusterView] = []

        def settled() -> bool:
            view = self.settled_view()
            if view is not None:
                found.append(view)
            return view is not None

        _until(settled, seconds, "the Redis Cluster to settle", self.logs)
        self.last_view = found[-1]
        return found[-1]

    def _current(self) -> ClusterView:
        for node in self.nodes:
            if node.running:
                view = self.view(node)
                if view is not None:
                    return view
        raise RuntimeError("no node of the Redis Cluster answers")

    def masters(self) -> list[RedisNode]:
        """The running nodes that are masters now, in creation order."""
        roles = self._current().roles
        return [n for n in self.nodes if n.running and roles.get(n.address) == "master"]

    def replicas(self, master: RedisNode | None = None) -> list[RedisNode]:
        """The running replicas (of ``master`` only, when given)."""
        view = self._current()
        return [
            n
            for n in self.nodes
            if n.running
            and view.roles.get(n.address) == "replica"
            and (master is None or view.masters_of.get(n.address) == master.address)
        ]

    def master_of_key(self, key: str) -> RedisNode:
        """The node serving ``key``'s hash slot now."""
        slot = self._current_slot(key)
        view = self._current()
        for address, ranges in view.slots.items():
            for served in ranges:
                low, _, high = served.partition("-")
                if int(low) <= slot <= int(high or low):
                    return self.node(address)
        raise RuntimeError(f"no master serves slot {slot}")

    def _current_slot(self, key: str) -> int:
        for node in self.nodes:
            if node.running:
                slot = node.command("CLUSTER", "KEYSLOT", key)
                if isinstance(slot, int):
                    return slot
        raise RuntimeError("no node of the Redis Cluster answers")

    # -- failures --------------------------------------------------------------------------

    def kill(self, node: RedisNode) -> None:
        """SIGKILL one node (a crash); its data is gone unless ``persistent``."""
        node.kill()

    def stop(self, node: RedisNode) -> None:
        """SIGTERM one node (a clean shutdown)."""
        node.stop()

    def wait_for_failover(self, old_master: RedisNode, seconds: float = 60.0) -> RedisNode:
        """Wait until a replica of the (dead) ``old_master`` serves its slots; return it.

        "Its replicas" and "its slots" are those of the last healthy view (``wait_ready``,
        ``restart``, an earlier failover). Also waits until every running node agrees on
        the new view, so a client asking any node finds the promoted one.
        """
        before = self.last_view
        if before is None or before.roles.get(old_master.address) != "master":
            raise RuntimeError(f"{old_master.address} was not a master when the cluster settled")
        candidates = {r for r, m in before.masters_of.items() if m == old_master.address}
        if not candidates:
            raise RuntimeError(f"{old_master.address} has no replica to take over")
        found: list[tuple[RedisNode, ClusterView]] = []

        def took_over() -> bool:
            view = self.settled_view()
            if view is None:
                return False
            for address in candidates:
                if view.slots.get(address) == before.slots[old_master.address]:
                    found.append((self.node(address), view))
                    return True
            return False

        _until(took_over, seconds, f"a replica of {old_master.address} to take over", self.logs)
        promoted, self.last_view = found[-1]
        return promoted

    def restart(self, node: RedisNode, seconds: float = 60.0) -> None:
        """Start a stopped or killed node again and wait until the cluster is healthy."""
        node.start(seconds)
        self.wait_ready(seconds)


# --- Redis Sentinel --------------------------------------------------------------------


def _pairs(reply: object) -> dict[str, str]:
    """A Sentinel reply as a dict: a map (RESP3) or a flat ``[key, value, ...]`` (RESP2)."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    if not isinstance(reply, list):
        return {}
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


class RedisSentinelServers:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels on 127.0.0.1.

    ``data_nodes`` are the master and the replicas in creation order (the first is the
    initial master); ``current_master()`` asks the Sentinels who the master is now.
    """

    def __init__(
        self,
        directory: Path,
        *,
        service_name: str = "notifycore",
        replicas: int = 1,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 3000,
        failover_timeout_ms: int = 5000,
        info_period_ms: int | None = 1000,
        publish_period_ms: int | None = 500,
    ) -> None:
        self.directory = directory
        self.service_name = service_name
        # Sentinel's internal periods (SENTINEL DEBUG, Redis 7.0+); None keeps Redis' own.
        self._debug = [
            *(("INFO-PERIOD", info_period_ms) if info_period_ms is not None else ()),
            *(("PUBLISH-PERIOD", publish_period_ms) if publish_period_ms is not None else ()),
        ]
        self._data_args = [
            *("--save", "", "--appendonly", "no", "--protected-mode", "yes"),
            *("--repl-diskless-sync-delay", "0"),
        ]
        self.data_nodes = [
            RedisNode(directory / f"data{index}", self._data_args) for index in range(1 + replicas)
        ]
        for replica in self.data_nodes[1:]:
            replica.extra_args += ["--replicaof", HOST, str(self.data_nodes[0].port)]
        self.sentinels: list[RedisNode] = []
        for index in range(sentinels):
            sentinel_dir = directory / f"sentinel{index}"
            sentinel_dir.mkdir(parents=True, exist_ok=True)
            config = sentinel_dir / "sentinel.conf"  # Sentinel rewrites it: one file each
            config.write_text(
                f"sentinel monitor {service_name} {HOST} {self.data_nodes[0].port} {quorum}\n"
                f"sentinel down-after-milliseconds {service_name} {down_after_ms}\n"
                f"sentinel failover-timeout {service_name} {failover_timeout_ms}\n"
                f"sentinel parallel-syncs {service_name} 1\n"
            )
            self.sentinels.append(RedisNode(sentinel_dir, ["--sentinel"], config=config))
        #: seconds ``start()`` took, from spawning the first process to watching Sentinels
        self.startup_seconds: float | None = None

    @property
    def nodes(self) -> list[RedisNode]:
        return [*self.data_nodes, *self.sentinels]

    def url(self, db: int = 0) -> str:
        """``redis+sentinel://h:p,h:p,h:p/<service_name>/<db>`` (issue 16's form)."""
        hosts = ",".join(sentinel.address for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service_name}/{db}"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, sentinel.port) for sentinel in self.sentinels]

    def node(self, address: str) -> RedisNode:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def logs(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, seconds: float = 60.0) -> None:
        began = time.monotonic()
        try:
            # Sentinels learn the replicas from the master's INFO when they connect; with
            # the replica attached first they know it at once instead of 10 s later.
            for node in self.data_nodes:
                node.spawn()
            _in_parallel(self.data_nodes, lambda node: node.wait_started(seconds))
            master = self.data_nodes[0]
            _until(
                lambda: all(self._replica_of(r, master) for r in self.data_nodes[1:]),
                seconds,
                "the replicas to sync with the master",
                self.logs,
            )
            for sentinel in self.sentinels:
                sentinel.spawn()
            _in_parallel(self.sentinels, lambda node: node.wait_started(seconds))
            for sentinel in self.sentinels:
                if self._debug and sentinel.command("SENTINEL", "DEBUG", *self._debug) is None:
                    raise RuntimeError(f"SENTINEL DEBUG failed on {sentinel.address}")
            _until(self._watching, seconds, "the Sentinels to watch the master", self.logs)
        except BaseException:
            self.shutdown()
            raise
        self.startup_seconds = time.monotonic() - began

    def shutdown(self) -> None:
        _in_parallel(self.nodes, RedisNode.kill)

    # -- state -----------------------------------------------------------------------------

    def _replica_of(self, node: RedisNode, master: RedisNode) -> bool:
        info = node.command("INFO", "replication")
        return (
            isinstance(info, dict)
            and info.get("role") == "slave"
            and info.get("master_port") == master.port
            and info.get("master_link_status") == "up"
        )

    def _watching(self) -> bool:
        """Every running Sentinel sees the master, all replicas, all other Sentinels."""
        running = [s for s in self.sentinels if s.running]
        replicas = {n.address for n in self.data_nodes if n.running} - {
            self.current_master_address()
        }
        for sentinel in running:
            master = _pairs(sentinel.command("SENTINEL", "MASTER", self.service_name))
            if master.get("flags") != "master":
                return False
            if int(master.get("num-other-sentinels", -1)) < len(self.sentinels) - 1:
                return False
            known = sentinel.command("SENTINEL", "REPLICAS", self.service_name)
            healthy = {
                f"{r['ip']}:{r['port']}"
                for r in map(_pairs, known if isinstance(known, list) else [])
                if r.get("flags") == "slave" and r.get("master-link-status") == "ok"
            }
            if not replicas <= healthy:
                return False
        return True

    def current_master_address(self) -> str | None:
        """The master's address as every running Sentinel names it; ``None`` if they differ."""
        answers = set()
        for sentinel in self.sentinels:
            if sentinel.running:
                reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
                answers.add(f"{reply[0]}:{reply[1]}" if isinstance(reply, list) else None)
        return answers.pop() if len(answers) == 1 else None

    def current_master(self) -> RedisNode:
        address = self.current_master_address()
        if address is None:
            raise RuntimeError("the Sentinels do not agree on a master")
        return self.node(address)

    def _is_master(self, node: RedisNode) -> bool:
        role = node.command("ROLE")
        return isinstance(role, list) and bool(role) and role[0] == "master"

    # -- failures --------------------------------------------------------------------------

    def kill(self, node: RedisNode) -> None:
        """SIGKILL one node (a crash)."""
        node.kill()

    def stop(self, node: RedisNode) -> None:
        """SIGTERM one node (a clean shutdown)."""
        node.stop()

    def wait_for_failover(self, old_master: RedisNode, seconds: float = 90.0) -> RedisNode:
        """Wait until every running Sentinel names another master, which answers ``ROLE``
        master; return it."""

        def failed_over() -> bool:
            address = self.current_master_address()
            return (
                address is not None
                and address != old_master.address
                and self._is_master(self.node(address))
            )

        _until(failed_over, seconds, f"the Sentinels to replace {old_master.address}", self.logs)
        return self.current_master()

    def restart(self, node: RedisNode, *, as_replica: bool = True, seconds: float = 120.0) -> None:
        """Start a stopped or killed data node again and wait until it replicates the
        current master and every Sentinel sees it as a healthy replica.

        ``as_replica=True`` starts it with ``--replicaof <current master>``, as an operator
        would. ``as_replica=False`` starts a former master as it was, a master: a stale
        master that the Sentinels turn into a replica after a while (see the module
        docstring), the case where clients meet ``READONLY``.
        """
        if node not in self.data_nodes:
            raise ValueError(f"{node.address} is not a data node")
        master = self.current_master()
        node.extra_args = list(self._data_args)
        if as_replica and master is not node:
            node.extra_args += ["--replicaof", HOST, str(master.port)]
        node.start(seconds)
        if master is not node:
            _until(
                lambda: self._replica_of(node, master),
                seconds,
                f"{node.address} to replicate {master.address}",
                self.logs,
            )
        _until(self._watching, seconds, "the Sentinels to see every replica", self.logs)


# --- traffic through a failover -------------------------------------------------------


class Traffic:
    """Jobs sent through :class:`notifycore.Notifications` to a queued consumer run by its
    worker (threads of this process), and messages published to a stream and followed,
    all counted: what the sender was told is stored (``sent_jobs``, ``published``),
    what the consumer ran (``ran``) and what the follower got (``followed``).

    ``start()`` runs a producer thread (one job and one message per step, a failed call
    counted in ``failures`` and not retried: the next step sends new ones), the worker
    and a follower of ``stream``, each with its own backend; ``stop()`` ends the
    producer, ``settle()`` waits until everything stored was run and followed (or its
    bound passes), ``close()`` ends the rest. The queue and the stream share one name,
    so on a Redis Cluster their keys share one hash slot: one master holds both.
    """

    def __init__(self, url: str, *, name: str = "traffic", **settings: Any) -> None:
        from notifycore import Notifications

        self.name = name
        prefix = f"traffic-{os.urandom(3).hex()}:"
        config = {
            "BACKEND": "redis",
            "REDIS_URL": url,
            "REDIS_PREFIX": prefix,
            "VISIBILITY_TIMEOUT": 5,
            **settings,
        }
        self.notifications = Notifications(config=config, environ={})
        hub = self.notifications.create_hub("Jobs")
        hub.register_consumer(self._run, name="work", mode="queued", queue=name)
        #: The application's backend (a RedisBackend: keys, client).
        self.backend: Any = self.notifications.backend
        self.sent_jobs: list[str] = []
        self.published: list[bytes] = []
        self.ran: set[str] = set()
        self.followed: list[bytes] = []
        self.failures = 0
        self.resets = 0
        self._lock = threading.Lock()
        self._stop_producing = threading.Event()
        self._stop_following = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, event: Any) -> None:
        with self._lock:
            self.ran.add(event.event_id)

    def _produce(self) -> None:
        from notifycore import BackendError, Event

        step = 0
        while not self._stop_producing.is_set():
            step += 1
            event = Event(None, "job", f"job {step}")
            try:
                self.notifications.send(event)
                with self._lock:
                    self.sent_jobs.append(event.event_id)
            except BackendError:
                self.failures += 1
            data = f"message {step}".encode()
            try:
                self.backend.publish(self.name, data)
                with self._lock:
                    self.published.append(data)
            except BackendError:
                self.failures += 1
            self._stop_producing.wait(0.005)

    def _follow(self) -> None:
        follower = type(self.backend).from_settings(self.notifications.settings)
        try:
            for batch in follower.follow(self.name, "0-0", stop=self._stop_following, poll=0.2):
                self.resets += batch.reset
                with self._lock:
                    self.followed.extend(m.data for m in batch.messages)
        finally:
            follower.close()

    def start(self) -> Traffic:
        self.notifications.start_worker(concurrency=2, queues=[self.name])
        for target in (self._produce, self._follow):
            thread = threading.Thread(target=target, name=f"traffic-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        return self

    def stored(self) -> int:
        """How many jobs and messages the producer was told are stored."""
        with self._lock:
            return len(self.sent_jobs) + len(self.published)

    def wait_stored(self, more: int, seconds: float = 60.0) -> None:
        """Wait until ``more`` further jobs and messages are stored."""
        target = self.stored() + more
        _until(lambda: self.stored() >= target, seconds, f"{more} more stores", lambda: "")

    def stop(self) -> None:
        self._stop_producing.set()
        self._threads[0].join(60)

    def missing(self) -> tuple[list[str], list[bytes]]:
        """Stored jobs not run, stored messages not followed."""
        with self._lock:
            followed = set(self.followed)
            return (
                [j for j in self.sent_jobs if j not in self.ran],
                [m for m in self.published if m not in followed],
            )

    def settle(self, seconds: float = 60.0) -> None:
        """Wait until nothing stored is missing, ``seconds`` at most (no error after)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(self.missing()):
            time.sleep(0.1)

    def report(self) -> str:
        jobs, messages = self.missing()
        return (
            f"{len(self.sent_jobs)} jobs stored, {len(jobs)} of them never ran; "
            f"{len(self.published)} messages stored, {len(messages)} never followed; "
            f"{self.failures} calls failed (not stored), {self.resets} follower resets"
        )

    def close(self) -> None:
        self._stop_producing.set()
        self._stop_following.set()
        for thread in self._threads:
            thread.join(60)
        self.notifications.close()
