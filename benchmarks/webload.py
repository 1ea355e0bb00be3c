"""The machinery of the web benchmarks: servers in their own processes, clients in theirs.

A server (uvicorn, gunicorn) runs an app written to a temporary module;
:class:`Clients` runs :mod:`benchmarks.load_client` in another process; the
benchmark process only publishes events (``POST``, on one kept-alive
connection) and reads each process's CPU time and memory from ``/proc``.
Peers are measured round by round, alternating, and each figure reported
is the median of its rounds: the machine is shared, and a busy moment then
hurts both sides alike.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Measurement
from benchmarks.load_client import marker
from notifycore.testing import free_port

#: Clock ticks per second of /proc/<pid>/stat's CPU times.
_TICKS = os.sysconf("SC_CLK_TCK")


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Server:
    """An app served in its own process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    #: Other processes whose CPU counts as this server's (flask-sse's redis-server).
    helpers: list[int] = field(default_factory=list)
    #: How it was started (:func:`serve`), for :meth:`restart`.
    argv: list[str] = field(default_factory=list)
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def pids(self) -> list[int]:
        """The server's process, its children (gunicorn's worker) and its helpers."""
        return [self.process.pid, *children(self.process.pid), *self.helpers]

    def cpu(self) -> float:
        """CPU seconds used so far by every process of this server (all their threads)."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def rss(self) -> int:
        """Resident memory of the serving process (gunicorn's worker, else the server), bytes."""
        workers = children(self.process.pid)
        return rss_bytes(workers[0] if workers else self.process.pid)

    def restart(self) -> None:
        """Stop the server and start it again on the same port: nothing of its last round
        (a thousand threads of gone clients) is left to take the CPU of the next one."""
        self.stop()
        self.process = _start(self.argv, self.environ, self.port)

    def stop(self) -> None:
        workers = children(self.process.pid)
        self.process.terminate()
        # A benchmark server has nothing to finish: its workers go at once (flask-sse's would
        # otherwise outlive the Redis server stopped next, a traceback per thread).
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)


def uvicorn_command(*extra: str) -> list[str]:
    """uvicorn serving ``{module}:app`` on ``{port}``: one process, the default (h11) protocol."""
    return [
        sys.executable,
        *("-m", "uvicorn", "{module}:app", "--host", "127.0.0.1", "--port", "{port}"),
        *("--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "2"),
        *("--backlog", "4096"),
        *extra,
    ]


def serve(
    directory: str,
    module: str,
    source: str,
    command: list[str],
    *,
    env: dict[str, str] | None = None,
) -> Server:
    """Run ``source`` as ``module`` with ``command`` (``{module}``, ``{port}`` filled in)."""
    Path(directory, f"{module}.py").write_text(textwrap.dedent(source))
    port = free_port()
    environ = {**os.environ, "PYTHONPATH": directory, **(env or {})}
    argv = [part.replace("{port}", str(port)).replace("{module}", module) for part in command]
    return Server(_start(argv, environ, port), port, argv=argv, environ=environ)


def _start(argv: list[str], environ: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """Start ``argv`` and wait until it accepts connections on ``port``."""
    process = subprocess.Popen(argv, env=environ, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait(30)
                raise RuntimeError(f"{' '.join(argv[:4])} did not start") from None
            time.sleep(0.1)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (every thread), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Clients:
    """K clients of one server, in their own process (:mod:`benchmarks.load_client`)."""

    def __init__(
        self,
        port: int,
        path: str,
        clients: int,
        *,
        kind: str = "sse",
        subscribe: str = "",
        timeout: float = 300.0,
    ) -> None:
        config = {
            "kind": kind,
            "port": port,
            "path": path,
            "clients": clients,
            "subscribe": subscribe,
        }
        self.clients = clients
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.load_client", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        connected = self.wait("connected", timeout)
        if connected["failed"]:
            error = self.wait("error", 5).get("error")
            self.close()
            raise RuntimeError(f"{connected['failed']} of {clients} clients failed: {error}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:  # closed by its one reader, once the process ended it
            for line in self.process.stdout:
                self._lines.put(json.loads(line))
        self._lines.put({"exited": True})

    def wait(self, key: str, timeout: float) -> dict[str, Any]:
        """The next line carrying ``key`` (waiting at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the clients said no {key!r} in {timeout:.0f} s") from None
            if key in line:
                return line
            if "exited" in line:
                raise RuntimeError(f"the clients exited before {key!r}")

    def poll(self, key: str) -> bool:
        """Whether a line with ``key`` came (without waiting)."""
        try:
            while True:
                if key in self._lines.get_nowait():
                    return True
        except queue.Empty:
            return False

    def command(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        try:
            self.command("quit")
            self.process.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait(30)
        finally:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()


class Publisher:
    """POSTs benchmark events to one URL path on one kept-alive connection."""

    def __init__(self, port: int, path: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = path
        self.number = 0

    def publish(self, i: int) -> float:
        """Send event ``i`` (negative: warm-up); the time it was sent."""
        self.number += 1
        sent = time.time()
        body = json.dumps(
            {"event_id": f"e{self.number}", "event_type": "bench", "title": marker(i, sent)}
        )
        try:
            response = self._post(body)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the kept-alive connection while it was idle (uvicorn: after
            # 5 s): the request never reached it, send it on a new connection.
            self.connection.close()
            response = self._post(body)
        if response.status != 202:
            raise RuntimeError(f"POST {self.path} answered {response.status}")
        return sent

    def _post(self, body: str) -> http.client.HTTPResponse:
        self.connection.request("POST", self.path, body, {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response

    def close(self) -> None:
        self.connection.close()


# -- one load, one round ---------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """``events`` sent to ``clients`` clients, ``interval`` seconds apart (0: back to back).

    ``publishers`` connections send at once, each its share back to back
    (the web benchmarks use one: the issue's burst is one sender's events
    back to back, each sent once the last was answered). ``rounds``: at least
    this many rounds of each side (0: the suite's number), for a row whose median
    moves from run to run with fewer.
    """

    label: str
    clients: int
    events: int
    interval: float
    publishers: int = 1
    rounds: int = 0


@dataclass(frozen=True)
class Side:
    """One of the peers: its server, the stream's and the publishing paths."""

    name: str
    server: Server
    stream_path: str
    publish_path: str


@dataclass(frozen=True)
class Round:
    rate: float  # deliveries per second, first send to last receipt
    p50: float  # seconds
    p99: float
    cpu: float  # server CPU seconds per delivery
    client_cpu: float  # the clients' share of one core over the run
    publishing: float  # seconds from the first send to the last answer
    #: Why the round failed (a baseline's only: see one_round), "" if it did not.
    failed: str = ""


def warm_up(clients: Clients, publisher: Publisher, timeout: float = 120.0) -> None:
    """Send warm-up events until every client has received one: all are subscribed then."""
    deadline = time.monotonic() + timeout
    n = 0
    while not clients.poll("warm"):
        if time.monotonic() > deadline:
            raise RuntimeError("the clients were not all warm")
        n += 1
        publisher.publish(-n)
        time.sleep(0.1)
    time.sleep(0.5)  # let the last warm-up events reach every client before measuring


def _publish(
    port: int,
    path: str,
    numbers: range,
    interval: float,
    started: float,
    errors: list[BaseException],
) -> None:
    publisher = Publisher(port, path)
    try:
        for i in numbers:
            if interval:
                delay = started + i * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            publisher.publish(i)
    except Exception as exc:  # a POST timed out or was refused: the round failed
        errors.append(exc)
    finally:
        publisher.close()


def one_round(side: Side, load: Load, *, tolerate_failure: bool = False) -> Round:
    """One round of ``load`` on ``side``. A round that does not deliver everything (a POST
    failed, or the deliveries did not all come within the clients' time limit) raises,
    unless ``tolerate_failure`` (a baseline that collapsed under the load): then it is
    reported as failed, its rate over the time until it was given up, and its p50 and p99
    at least that time when more than half, or 1%, of the deliveries never came."""
    port = side.server.port
    clients = Clients(port, side.stream_path, load.clients)
    try:
        warm = Publisher(port, side.publish_path)
        try:
            warm_up(clients, warm)
        finally:
            warm.close()
        cpu_before, client_before = side.server.cpu(), clients.cpu()
        clients.command(f"expect {load.events} 600")
        clients.wait("expecting", 60)
        first = time.time()
        started = time.monotonic()
        shares = [range(n, load.events, load.publishers) for n in range(load.publishers)]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(
                target=_publish,
                args=(port, side.publish_path, share, load.interval, started, errors),
            )
            for share in shares
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        publishing = time.monotonic() - started
        if errors:
            clients.command("stop")
        report = clients.wait("received", 700)
        given_up = time.time()
        cpu_used = side.server.cpu() - cpu_before
        client_used = clients.cpu() - client_before
    finally:
        clients.close()
    # One more event once the clients are gone: a server that notices a gone client only
    # when it writes to it (flask-sse's threads wait on Redis) frees its threads for the next
    # round.
    flush = Publisher(port, side.publish_path)
    try:
        flush.publish(-1)
    finally:
        flush.close()
    deliveries, expected = report["received"], report["expected"]
    if deliveries == expected:
        elapsed = report["last"] - first
        return Round(
            rate=deliveries / elapsed,
            p50=report["p50"],
            p99=report["p99"],
            cpu=cpu_used / deliveries,
            client_cpu=client_used / elapsed,
            publishing=publishing,
        )
    failed = f"{side.name}: {deliveries:,} of {expected:,} deliveries" + (
        f" (a POST failed: {errors[0]!r})" if errors else " within the time limit"
    )
    if not tolerate_failure:
        raise RuntimeError(failed)
    elapsed = given_up - first
    missing = 1 - deliveries / expected
    return Round(
        rate=deliveries / elapsed,
        p50=max(report["p50"], elapsed) if missing > 0.5 else report["p50"],
        p99=max(report["p99"], elapsed) if missing > 0.01 else report["p99"],
        cpu=cpu_used / max(deliveries, 1),
        client_cpu=client_used / elapsed,
        publishing=publishing,
        failed=failed,
    )


def alternate(
    sides: tuple[Side, Side],
    load: Load,
    rounds: int,
    progress: Callable[[str], None] | None = None,
    *,
    fresh: bool = False,
) -> tuple[list[Round], list[Round]]:
    """``rounds`` rounds of each side (at least ``load.rounds``), alternating which goes
    first. ``fresh``: both servers are started again before every round (a server that
    keeps a core busy after its own round, as flask-sse's worker did on a slow machine, must
    not share the machine with its peer's round)."""
    ours: list[Round] = []
    theirs: list[Round] = []
    for number in range(max(rounds, load.rounds)):
        order = (0, 1) if number % 2 == 0 else (1, 0)
        for index in order:
            for side in sides:
                if fresh:
                    side.server.restart()
                settle(side.server)
            # The first side is notifycore's: its failure stops the run; a baseline's is
            # reported (flask-sse has collapsed under the burst on a slow machine).
            result = one_round(sides[index], load, tolerate_failure=index > 0)
            (ours if index == 0 else theirs).append(result)
            if progress is not None:
                progress(f"{load.label}: {sides[index].name} {result}")
    return ours, theirs


def settle(server: Server, window: float = 0.5, bound: float = 60.0) -> None:
    """Wait until ``server`` is quiet (under 5% of a core over ``window`` seconds), at most
    ``bound`` seconds: a server still ending the last round's clients (flask-sse's thousand
    threads) must not take the CPU of the round measured next, its own or its peer's."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        before = server.cpu()
        time.sleep(window)
        if server.cpu() - before < 0.05 * window:
            return


def median(rounds: Iterable[Round], attribute: str) -> float:
    return float(statistics.median(getattr(r, attribute) for r in rounds))


def rows(
    title: str,
    load: Load,
    baseline: str,
    ours: list[Round],
    theirs: list[Round],
    limits: str,
    aims: dict[str, float] | None = None,
) -> list[Measurement]:
    """Four rows for one load: rate, p50, p99 and server CPU per delivery (medians).

    ``aims`` maps a row's last word ("rate", "p99", "CPU") to its aimed ratio; every row
    carries ``limits`` as what limits it."""
    aims = aims or {}
    rounds = f"median of {len(ours)} alternating rounds"
    client_note = f"clients at {median(ours, 'client_cpu'):.0%} / {median(theirs, 'client_cpu'):.0%} of a core"
    failures = [r.failed for r in theirs if r.failed]
    if failures:
        client_note += (
            f"; the baseline failed {len(failures)} of {len(theirs)} rounds ({failures[0]}):"
            " its rate is over the time until it was given up, its latencies at least that"
        )
    return [
        Measurement(
            f"{title}, {load.label}: rate",
            median(ours, "rate"),
            baseline,
            median(theirs, "rate"),
            "deliveries/s",
            note=f"{rounds}; {client_note}",
            aim=aims.get("rate"),
            limit=limits,
        ),
        Measurement(
            f"{title}, {load.label}: p50 latency",
            median(ours, "p50") * 1000,
            baseline,
            median(theirs, "p50") * 1000,
            "ms",
            note="lower is better",
            limit=limits,
        ),
        Measurement(
            f"{title}, {load.label}: p99 latency",
            median(ours, "p99") * 1000,
            baseline,
            median(theirs, "p99") * 1000,
            "ms",
            note="lower is better",
            aim=aims.get("p99"),
            limit=limits,
        ),
        Measurement(
            f"{title}, {load.label}: server CPU per delivery",
            median(ours, "cpu") * 1e6,
            baseline,
            median(theirs, "cpu") * 1e6,
            "µs",
            note="lower is better; from /proc/<pid>/stat, every thread",
            aim=aims.get("CPU"),
            limit=limits,
        ),
    ]


def progress_printer(enabled: bool) -> Callable[[str], None] | None:
    if not enabled:
        return None
    return lambda text: print(f"  [{text}]", file=sys.stderr, flush=True)
