"""Every key of one stream or one queue lands in one Redis Cluster hash slot, whatever the
name holds (braces included): a script over them would otherwise fail with CROSSSLOT."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from notify_redis.keys import KeySpace

names = st.text(alphabet=st.sampled_from("ab{}:#é \x00"), max_size=12) | st.text(max_size=40)


def slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode("utf-8", "surrogatepass")) for key in keys}


@settings(max_examples=300, deadline=None)
@given(name=names, prefix=st.sampled_from(["nc:", "app{", "x}", ""]))
def test_one_slot_per_stream_and_per_queue(name: str, prefix: str) -> None:
    space = KeySpace(prefix)
    stream = space.stream(name)
    assert len(slots([stream.stream, stream.meta, stream.publishers])) == 1
    queue = space.queue(name)
    queue_keys = [queue.jobs, queue.leases, queue.state, queue.delayed, queue.delayed_data]
    assert len(slots([*queue_keys, queue.publishers, queue.dead])) == 1


def test_a_name_that_would_empty_the_tag_is_tagged_with_a_digest() -> None:
    space = KeySpace("nc:")
    for name in ("", "}", "}x", "}{y}"):
        stream = space.stream(name)
        assert len(slots([stream.stream, stream.meta, stream.publishers])) == 1
        assert stream.stream != space.stream(name + "z").stream
    assert space.stream("plain").stream == "nc:s:{plain}"
