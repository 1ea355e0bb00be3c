from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from notifycore import Event, JobOutcome, Notifications, Worker
from notifycore.errors import InvalidJob
from notifycore.jobs import decode_job, encode_job
from notifycore.worker import backoff_delay

# Each test runs with the JSON accelerator (orjson) and without it.
pytestmark = pytest.mark.usefixtures("json_paths")

Make = Callable[..., Notifications]


def test_job_payload_round_trip_and_errors() -> None:
    e = Event(None, "t", "tïtle")
    spec = decode_job(encode_job("Hub", 'con"sumer', e.to_json_bytes()))
    assert (spec.hub, spec.consumer, spec.event) == ("Hub", 'con"sumer', e)
    for bad, reason in [
        (b"{nope", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'{"v": 9}', "unsupported job version"),
        (b'{"v": 1, "hub": 1, "consumer": "c", "event": {}}', "'hub' and 'consumer'"),
        (b'{"v": 1, "hub": "h", "consumer": "c", "event": 5}', "'event' object"),
        (b'{"v": 1, "hub": "h", "consumer": "c", "event": {"title": "x"}}', "event_type"),
    ]:
        with pytest.raises(InvalidJob, match=reason):
            decode_job(bad)


def test_oversized_job_payloads_are_refused_before_parsing() -> None:
    big = encode_job("H", "c", Event(None, "t", body="x" * 5000).to_json_bytes())
    with pytest.raises(InvalidJob, match="over the (event size )?limit of 1000"):
        decode_job(big, max_event_size=1000)
    assert decode_job(big, max_event_size=10_000).event.body == "x" * 5000


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert [backoff_delay(a, 0.5, 3.0) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_failing_job_is_retried_then_dead_lettered_with_its_error(make_notifications: Make) -> None:
    n = make_notifications(MAX_TRIES=3, RETRY_BACKOFF=0.0)
    calls: list[int] = []
    hub = n.create_hub("H")

    @hub.register_consumer(name="flaky", mode="queued")
    def flaky(e: Event) -> None:
        calls.append(1)
        raise ConnectionError("smtp down")

    n.send(Event(None, "t"))
    worker = Worker(n)
    outcomes = [worker.run_once(block=1.0) for _ in range(3)]
    assert outcomes == [JobOutcome.RETRY, JobOutcome.RETRY, JobOutcome.DEAD]
    assert len(calls) == 3
    letters = n.backend.dead_letters("notifycore")
    assert len(letters) == 1
    assert letters[0].error == "ConnectionError: smtp down"
    assert letters[0].attempts == 3
    assert worker.run_once() is None


def test_a_consumer_can_lower_its_tries(make_notifications: Make) -> None:
    n = make_notifications(MAX_TRIES=10, RETRY_BACKOFF=0.0)
    hub = n.create_hub("H")
    hub.register_consumer(lambda e: 1 / 0, name="once", mode="queued", max_tries=1)
    n.send(Event(None, "t"))
    assert Worker(n).run_once() is JobOutcome.DEAD


def test_retry_succeeds_and_acks(make_notifications: Make) -> None:
    n = make_notifications(RETRY_BACKOFF=0.0)
    hub = n.create_hub("H")
    state = {"calls": 0}

    @hub.register_consumer(name="second-time-lucky", mode="queued")
    def lucky(e: Event) -> None:
        state["calls"] += 1
        if state["calls"] == 1:
            raise TimeoutError("slow")

    n.send(Event(None, "t"))
    worker = Worker(n)
    assert worker.run_once(block=1.0) is JobOutcome.RETRY
    assert worker.run_once(block=1.0) is JobOutcome.DONE
    assert n.backend.queue_length("notifycore") == 0
    assert n.backend.dead_letters("notifycore") == []


def test_malformed_and_unknown_jobs_become_dead_letters_while_good_ones_run(
    make_notifications: Make,
) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    done: list[str] = []
    hub.register_consumer(lambda e: done.append(e.title), name="good", mode="queued")
    backend = n.backend
    n.send(Event(None, "t", "first"))
    backend.enqueue("notifycore", b"not json at all")
    backend.enqueue("notifycore", encode_job("H", "missing", Event(None, "t").to_json_bytes()))
    backend.enqueue("notifycore", encode_job("Nope", "good", Event(None, "t").to_json_bytes()))
    bad_event = json.dumps({"v": 1, "hub": "H", "consumer": "good", "event": {"title": 3}})
    backend.enqueue("notifycore", bad_event.encode())
    n.send(Event(None, "t", "last"))
    worker = Worker(n)
    assert worker.drain() == 6
    assert done == ["first", "last"]
    reasons = [d.error for d in backend.dead_letters("notifycore")]
    assert len(reasons) == 4
    assert "not valid JSON" in reasons[0]
    assert "no consumer named 'missing'" in reasons[1]
    assert "no hub named 'Nope'" in reasons[2]
    assert "event_type" in reasons[3] or "title" in reasons[3]
    assert worker.counts[JobOutcome.DEAD] == 4 and worker.counts[JobOutcome.DONE] == 2


def test_events_that_expire_in_the_queue_are_dropped_and_counted(make_notifications: Make) -> None:
    n = make_notifications()
    hub = n.create_hub("H")
    done: list[Event] = []
    hub.register_consumer(done.append, name="c", mode="queued")
    soon = datetime.now(UTC) + timedelta(milliseconds=50)
    n.send(Event(None, "t", expiration_datetime=soon))
    import time

    while datetime.now(UTC) <= soon:
        time.sleep(0.01)
    assert Worker(n).run_once() is JobOutcome.EXPIRED
    assert done == []
    assert n.stats["expired"] == 1
    assert n.backend.queue_length("notifycore") == 0


def test_a_permanent_failure_is_dead_lettered_without_retries(make_notifications: Make) -> None:
    from notifycore import PermanentFailure

    n = make_notifications(MAX_TRIES=5, RETRY_BACKOFF=0.0)
    calls: list[int] = []

    def refuse(event: Event) -> None:
        calls.append(1)
        raise PermanentFailure("550 no such mailbox")

    n.create_hub("H").register_consumer(refuse, name="mail", mode="queued")
    n.send(Event(None, "t"))
    assert Worker(n).run_once() is JobOutcome.DEAD
    assert len(calls) == 1
    assert n.backend.dead_letters("notifycore")[0].error == "PermanentFailure: 550 no such mailbox"
