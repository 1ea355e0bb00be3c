"""The benchmark report: its table, its SVG chart and the page --write makes (no timing here)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

import benchmarks.__main__ as benchmarks_main
from benchmarks.__main__ import main, write
from benchmarks.common import Measurement, alternate
from benchmarks.report import Section, chart_svg, document, table

SVG = "{http://www.w3.org/2000/svg}"


def rows() -> list[Measurement]:
    return [
        Measurement("fast <send> & co", 300.0, "bare loop", 200.0, "events/s", aim=0.5),
        Measurement("slow drain", 30.0, "raw loop", 100.0, "jobs/s", aim=0.7, limit="one writer"),
        Measurement("p99 latency", 2.0, "raw poll", 4.0, "ms", note="lower is better"),
        Measurement("cpu per delivery", 8.0, "bare app", 4.0, "µs CPU", aim=1.0),
        Measurement("on a par", 95.0, "raw", 100.0, "msgs/s"),
    ]


def sections() -> list[Section]:
    all_rows = rows()
    return [
        Section("first suite", "What the first measures.", all_rows[:2]),
        Section("second suite", "What the second measures.", all_rows[2:]),
    ]


def test_advantage_is_above_one_when_notifycore_is_better_whatever_the_unit() -> None:
    fast, slow, latency, cpu, par = rows()
    assert fast.advantage == pytest.approx(1.5) and fast.aim_met is True
    assert slow.advantage == pytest.approx(0.3) and slow.aim_met is False
    # Half the baseline's latency is twice as good; twice its CPU is half as good.
    assert latency.lower_better and latency.advantage == pytest.approx(2.0)
    assert cpu.lower_better and cpu.advantage == pytest.approx(0.5) and cpu.aim_met is False
    assert par.aim_met is None and not par.lower_better
    explicit = Measurement("x", 1.0, "y", 2.0, "ms", lower_is_better=False)
    assert explicit.advantage == pytest.approx(0.5)


def test_the_chart_draws_one_bar_per_row_coloured_by_its_aim() -> None:
    svg = chart_svg(sections())
    root = ET.fromstring(svg)  # well-formed, names with < and & escaped
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    assert [float(b.get("data-advantage", "nan")) for b in bars] == pytest.approx(
        [1.5, 0.3, 2.0, 0.5, 0.95]
    )
    fills = [b.get("fill") for b in bars]
    assert fills[0] == fills[2]  # meets its aim / ahead without one: the same green
    assert fills[1] == fills[3] != fills[0]  # below its aim: red
    assert fills[4] not in (fills[0], fills[1])  # no aim, within 10%: on a par
    aims = [line for line in root.iter(f"{SVG}line") if line.get("class") == "aim"]
    assert len(aims) == 3
    texts = "".join(root.itertext())
    assert "fast <send> & co" in texts and "first suite" in texts and "vs raw poll" in texts
    # A bar right of 1x (ahead) starts at 1x; one left of it ends there.
    one = float(bars[0].get("x", "nan"))
    behind = bars[1]
    assert float(behind.get("x", "nan")) + float(behind.get("width", "nan")) == pytest.approx(
        one, abs=0.2
    )


def test_the_table_and_page_show_ratio_aim_and_limits() -> None:
    text = table(rows())
    assert "| fast <send> & co | 300 events/s | bare loop | 200 events/s | 150% | ≥ 50% |" in text
    assert (
        "| 50% (lower is better) | \N{EN DASH} |" in text
    )  # said once, though the note says it too
    assert "| 200% (lower is better) | ≤ 100% |" in text
    page = document(sections(), stamp="2026-12-01 00:00 UTC", machine="CPython, 2 cores")
    assert "![" in page and "(benchmarks.svg)" in page
    assert "- slow drain (vs raw loop): one writer." in page
    assert "- **second suite**: What the second measures." in page


def test_write_puts_the_chart_beside_the_page(tmp_path) -> None:
    doc = tmp_path / "bench.md"
    svg = write(sections(), doc)
    assert svg == tmp_path / "bench.svg"
    assert "(bench.svg)" in doc.read_text(encoding="utf-8")
    ET.fromstring(svg.read_text(encoding="utf-8"))


def test_a_partial_run_never_replaces_the_full_page(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--only", "send", "--write"])
    assert exc.value.code == 2
    assert "needs --doc" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown suite 'nope'"):
        main(["--only", "nope"])


def test_verbose_reaches_the_suites_that_print_their_rounds(monkeypatch, capsys) -> None:
    calls: list[tuple[str, dict[str, bool]]] = []

    def suite(name: str, *, rounds: bool) -> SimpleNamespace:
        def run_with_rounds(quick: bool = False, verbose: bool = False) -> list[Measurement]:
            calls.append((name, {"quick": quick, "verbose": verbose}))
            return rows()[:1]

        def run_without(quick: bool = False) -> list[Measurement]:
            calls.append((name, {"quick": quick}))
            return rows()[:1]

        run = run_with_rounds if rounds else run_without
        return SimpleNamespace(NAME=name, __doc__="", run=run)

    fakes = {"bench_web": suite("web", rounds=True), "bench_send": suite("send", rounds=False)}
    monkeypatch.setattr(benchmarks_main, "_suite", fakes.__getitem__)
    assert main(["--only", "web,send", "--quick", "--verbose"]) == 0
    assert calls == [("web", {"quick": True, "verbose": True}), ("send", {"quick": True})]
    calls.clear()
    assert main(["--only", "web"]) == 0
    assert calls == [("web", {"quick": False, "verbose": False})]
    assert "fast <send> & co" in capsys.readouterr().out


def test_alternate_takes_turns_and_gives_medians() -> None:
    calls: list[str] = []
    figures = {"a": iter([1.0, 9.0, 2.0]), "b": iter([5.0, 4.0, 6.0])}

    def side(name: str):
        def run() -> float:
            calls.append(name)
            return next(figures[name])

        return run

    assert alternate({"a": side("a"), "b": side("b")}, 3) == {"a": 2.0, "b": 5.0}
    assert calls == ["a", "b", "b", "a", "a", "b"]
