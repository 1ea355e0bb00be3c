"""The web benchmarks' rounds against a real uvicorn: a baseline that fails is reported."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest

from benchmarks import bench_web, webload
from benchmarks.webload import Load, Side

# The bare app of the Starlette rows, whose publishing fails from event 2 on: the collapse
# of a baseline under load, as flask-sse's gunicorn worker answering no POST for a minute.
FAILING_APP = bench_web.BARE_APP.replace(
    "    event = await request.json()\n",
    "    event = await request.json()\n"
    "    if event['title'].startswith(('#EV#2#', '#EV#3#', '#EV#4#')):\n"
    "        return JSONResponse({'error': 'collapsed'}, status_code=500)\n",
)


@pytest.fixture(scope="module")
def side() -> Iterator[Side]:
    assert FAILING_APP != bench_web.BARE_APP
    with tempfile.TemporaryDirectory() as directory:
        server = webload.serve(directory, "failing_app", FAILING_APP, webload.uvicorn_command())
        try:
            yield Side("bare", server, "/stream", "/publish")
        finally:
            server.stop()


def test_a_baseline_round_that_fails_is_reported_not_raised(side: Side) -> None:
    result = webload.one_round(side, Load("five", 3, 5, 0.0), tolerate_failure=True)
    assert "6 of 15 deliveries (a POST failed" in result.failed
    assert result.rate > 0
    # 60% of the deliveries never came: both latencies are at least the time given up after.
    assert result.p50 >= result.publishing and result.p99 >= result.publishing
    rows = webload.rows("t", Load("five", 3, 5, 0.0), "bare", [result], [result], "limits")
    assert "the baseline failed 1 of 1 rounds (bare: 6 of 15 deliveries" in rows[0].note


def test_notifycores_round_that_fails_stops_the_run(side: Side) -> None:
    with pytest.raises(RuntimeError, match="6 of 15 deliveries"):
        webload.one_round(side, Load("five", 3, 5, 0.0))


def test_a_restarted_server_is_a_new_process_on_the_same_port(side: Side) -> None:
    # What the Flask suite does before every round (alternate(fresh=True)).
    before = side.server.process.pid
    side.server.restart()
    assert side.server.process.pid != before and side.server.process.poll() is None
    result = webload.one_round(side, Load("two", 2, 2, 0.0))  # events 0 and 1 are published
    assert result.failed == "" and result.rate > 0


def test_a_load_that_asks_for_more_rounds_gets_them(side: Side) -> None:
    # The K = 100 paced load runs seven rounds whatever the suite's number (three).
    ours, theirs = webload.alternate((side, side), Load("two", 2, 2, 0.0, rounds=2), 1)
    assert (len(ours), len(theirs)) == (2, 2)
    assert all(r.failed == "" for r in ours + theirs)
