"""Run the benchmarks and print (or write) the results table.

python -m benchmarks                 # print the table
python -m benchmarks --write         # also regenerate docs/benchmarks.md and its chart
python -m benchmarks --quick         # smaller counts, for a smoke run
python -m benchmarks --only send,sqlite   # some suites (bench_send, bench_sqlite)
python -m benchmarks --only web,connections   # the web suites (bench_web, bench_connections)
python -m benchmarks --verbose       # also every round of the suites that run rounds, on stderr

``--write`` writes the page and ``benchmarks.svg`` beside it; with ``--only``
it needs ``--doc`` (a partial run must not replace the full page).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from benchmarks.common import Measurement
from benchmarks.report import Section, chart_svg, document, table

#: The suites, in the table's order (modules of this package, imported when they run:
#: the web suites need packages the others do not).
SUITES = [
    "bench_send",
    "bench_sqlite",
    "bench_redis",
    "bench_redis_cluster",
    "bench_amqp",
    "bench_web",
    "bench_flask",
    "bench_connections",
    "bench_inbox",
]
DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _suite(name: str) -> ModuleType:
    return importlib.import_module(f"benchmarks.{name}")


def _chosen(only: str | None) -> list[str]:
    if not only:
        return list(SUITES)
    chosen = []
    for part in only.split(","):
        name = part.strip()
        name = name if name.startswith("bench_") else f"bench_{name}"
        if name not in SUITES:
            raise SystemExit(f"unknown suite {part.strip()!r}; the suites: {', '.join(SUITES)}")
        chosen.append(name)
    return chosen


def write(sections: list[Section], doc: Path, load_before: float | None = None) -> Path:
    """Write the page ``doc`` and its chart (``benchmarks.svg`` beside it); returns the chart."""
    python = f"{platform.python_implementation()} {platform.python_version()}"
    machine = f"{python}, {os.cpu_count()} cores"
    if load_before is not None:  # how busy the shared machine was: the p99 rows feel it most
        machine += (
            f"; load average {load_before:.1f} when the run started, "
            f"{os.getloadavg()[0]:.1f} when it ended"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    svg = doc.with_suffix(".svg")
    svg.write_text(chart_svg(sections), encoding="utf-8")
    doc.write_text(
        document(sections, stamp=stamp, machine=machine, chart=svg.name), encoding="utf-8"
    )
    return svg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--write", action="store_true", help="regenerate docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--only", help="comma-separated suites to run (send, sqlite, ...)")
    parser.add_argument("--doc", type=Path, help="the page --write writes (default: docs/...)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print every round of the suites that run rounds (the web suites), on stderr",
    )
    args = parser.parse_args(argv)
    if args.write and args.only and args.doc is None:
        parser.error("--write with --only needs --doc: a partial run would replace the full page")
    load_before = os.getloadavg()[0]
    sections: list[Section] = []
    for name in _chosen(args.only):
        suite = _suite(name)
        options = {"quick": args.quick}
        if args.verbose and "verbose" in inspect.signature(suite.run).parameters:
            options["verbose"] = True  # a full run's medians can then be traced to its rounds
        rows: list[Measurement] = suite.run(**options)
        sections.append(Section(suite.NAME, suite.__doc__ or "", rows))
        print(table(rows), flush=True)
    if args.write:
        doc = args.doc or DOC
        svg = write(sections, doc, load_before)
        print(f"wrote {doc} and {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
