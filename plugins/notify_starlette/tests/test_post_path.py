"""POST /events' own path: the headers and query it reads."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import Request

from notify_starlette._shared import _Headers, incoming


def test_the_protocol_reads_each_header_as_starlettes_headers_get_does() -> None:
    raw = [
        (b"host", b"example.test"),
        (b"origin", b"https://first.test"),
        (b"origin", b"https://second.test"),  # a repeated header: the first one counts
        (b"cookie", b"a=1"),
        (b"x-latin", "caf\u00e9".encode("latin-1")),
    ]
    ours, theirs = _Headers(raw), Headers(raw=raw)
    for name in (
        "Host",
        "ORIGIN",
        "origin",
        "Cookie",
        "x-latin",
        "Authorization",
        "Sec-Fetch-Site",
    ):
        assert ours.get(name) == theirs.get(name), name
        assert (name in ours) == (name in theirs), name


def test_a_request_without_a_query_string_has_no_query_and_one_with_it_has_its_own() -> None:
    def request(query: bytes) -> Request:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [],
            "query_string": query,
        }
        return Request(scope)

    bare = incoming(request(b""), allow_query_token=True)
    assert bare.query.get("token") is None and "token" not in bare.query
    given = incoming(request(b"token=t-1&x=2"), allow_query_token=True)
    assert given.query.get("token") == "t-1" and "x" in given.query
    assert given.native.state.token == "t-1"
    hidden = incoming(request(b"token=t-1"), allow_query_token=False)
    assert "token" in hidden.query and hidden.native.state.token is None
