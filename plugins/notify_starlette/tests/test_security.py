"""notify-starlette under the access rules docs/web.md shows, loaded from the page itself.

Private events stay off the hub's stream, the owner reads their own stream,
the sender is the signed-in user, and cookie-authenticated writes (and
WebSocket handshakes) are JSON-only and refused cross-site. Real uvicorn.
"""

from __future__ import annotations

import ast
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette_helpers import SSE, WAIT, Serve, data_of
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from notifycore import Notifications, PushConsumer

WEB_MD = Path(__file__).resolve().parents[3] / "docs" / "web.md"


def doc_functions(heading: str, **names: Any) -> dict[str, Any]:
    """The functions of the first Python block under ``heading`` in docs/web.md, verbatim."""
    section = WEB_MD.read_text().split(heading + "\n", 1)[1]
    block = textwrap.dedent(section.split("```python\n", 1)[1].split("```", 1)[0])
    tree = ast.parse(block)
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions, f"no functions in the example under {heading!r}"
    namespace = dict(names)
    exec(compile(ast.Module(list[ast.stmt](functions), []), str(WEB_MD), "exec"), namespace)
    return {function.name: namespace[function.name] for function in functions}


@dataclass(frozen=True)
class User:
    id: str
    is_admin: bool = False


class Users:
    """What the docs' ``users.by_token`` stands for."""

    known = {"t-alice": User("alice"), "t-bob": User("bob"), "t-root": User("root", True)}

    def by_token(self, token: str | None) -> User | None:
        return self.known.get(token or "")


EXAMPLE = doc_functions("## Starlette (`notify-starlette`)", users=Users())
#: The older way: "send" asked through authorize; its principal is the docs' Starlette one.
OLDER = {**doc_functions("## Who may send"), "authenticate": EXAMPLE["authenticate"]}
ALICE = {"Authorization": "Bearer t-alice"}
BOB = {"Authorization": "Bearer t-bob"}
ROOT = {"Authorization": "Bearer t-root"}


@pytest.fixture
def comments() -> Iterator[Notifications]:
    notifications = Notifications(config={"BACKEND": "memory"}, environ={})
    notifications.create_hub("Comments").register_consumer(PushConsumer())
    yield notifications
    notifications.close()


def titles(client: httpx.Client, url: str, headers: dict[str, str]) -> list[str]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return [item["event"]["title"] for item in response.json()["events"]]


@pytest.mark.parametrize("rules", [EXAMPLE, OLDER], ids=["authorize_send", "send_permission"])
def test_the_owner_reads_their_stream_and_private_events_stay_off_the_feed(
    serve: Serve, comments: Notifications, client: httpx.Client, rules: dict[str, Any]
) -> None:
    served = serve(comments, **rules)
    assert client.get(served.base + "/me/events", headers=BOB).status_code == 200
    with client.stream("GET", served.base + "/me/stream", headers=BOB) as response:
        assert response.status_code == 200, "the owner always reads their own stream"
        sse = SSE(response)
        sse.next()
        comments.send({"event_type": "chat", "title": "for alice", "recipients": ["alice"]})
        comments.send({"event_type": "chat", "title": "for bob", "recipients": ["bob"]})
        assert data_of(sse.next())["title"] == "for bob"
    comments.send({"event_type": "chat", "title": "for everyone"})
    assert titles(client, served.base + "/Comments/events", BOB) == ["for everyone"]
    assert client.get(served.base + "/me/stream").status_code == 401


def test_authorize_send_sees_the_claimed_sender(
    serve: Serve, comments: Notifications, client: httpx.Client
) -> None:
    served = serve(comments, **EXAMPLE)
    url = served.base + "/events"
    assert client.post(url, json={"event_type": "chat"}).status_code == 401
    mine = client.post(url, json={"event_type": "chat", "title": "mine"}, headers=ALICE)
    assert mine.status_code == 202 and mine.json()["sender"] == "alice"
    forged = {"event_type": "chat", "title": "forged", "sender": "system"}
    refused = client.post(url, json=forged, headers=ALICE)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    notice = client.post(url, json={**forged, "title": "notice"}, headers=ROOT)
    assert notice.status_code == 202 and notice.json()["sender"] == "system", "admins may"
    history = client.get(served.base + "/Comments/events", headers=ALICE).json()["events"]
    assert {i["event"]["title"]: i["event"]["sender"] for i in history} == {
        "mine": "alice",
        "notice": "system",
    }


def test_the_send_permission_sends_as_the_principal(
    serve: Serve, comments: Notifications, client: httpx.Client
) -> None:
    served = serve(comments, **OLDER)
    forged = {"event_type": "chat", "title": "forged", "sender": "system"}
    sent = client.post(served.base + "/events", json=forged, headers=BOB)
    assert sent.status_code == 202 and sent.json()["sender"] == "bob"
    history = client.get(served.base + "/Comments/events", headers=BOB).json()["events"]
    assert [i["event"]["sender"] for i in history] == ["bob"]


def test_the_send_permission_never_passes_a_claimed_sender_through(
    serve: Serve, comments: Notifications, client: httpx.Client
) -> None:
    """An int user id is the sender (and owns user:42); with no id, the claim is cleared."""

    def authenticate(request: Any) -> Any:
        return {"t-42": 42}.get(request.state.token or "")

    def authorize(user: Any, stream: str) -> bool:
        # Anyone may send, signed-in users read the feed: the "send" pseudo-stream only.
        return stream == "send" or (user is not None and stream == "event-hub-Comments")

    served = serve(comments, authenticate=authenticate, authorize=authorize)
    forged = {"event_type": "chat", "title": "forged", "sender": "system"}
    sent = client.post(served.base + "/events", json=forged)
    assert sent.status_code == 202 and sent.json()["sender"] == "", "no id: no sender"
    user = {"Authorization": "Bearer t-42"}
    sent = client.post(served.base + "/events", json=forged, headers=user)
    assert sent.status_code == 202 and sent.json()["sender"] == "42"
    comments.send({"event_type": "chat", "title": "for 42", "recipients": ["42"]})
    assert titles(client, served.base + "/me/events", user) == ["for 42"]
    with client.stream("GET", served.base + "/me/stream", headers=user) as response:
        assert response.status_code == 200
    history = client.get(served.base + "/Comments/events", headers=user).json()["events"]
    assert [item["event"]["sender"] for item in history] == ["", "42"]


# -- cross-site requests ------------------------------------------------------------------------

SESSIONS = {"s-bob": User("bob")}


def cookie_or_token(request: Any) -> Any:
    """A cookie-authenticated app that also takes Bearer tokens."""
    return Users().by_token(request.state.token) or SESSIONS.get(request.cookies.get("sid", ""))


@pytest.fixture
def cookie_app(serve: Serve, comments: Notifications) -> Iterator[tuple[str, httpx.Client]]:
    served = serve(
        comments,
        authenticate=cookie_or_token,
        authorize=EXAMPLE["authorize"],
        authorize_send=EXAMPLE["authorize_send"],
        trusted_origins=["https://app.example.com"],
    )
    with httpx.Client(timeout=WAIT, cookies={"sid": "s-bob"}) as client:
        yield served.base, client


def sent_titles(base: str, client: httpx.Client) -> list[str]:
    return titles(client, base + "/Comments/events", {})


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_a_cross_site_post_with_the_session_cookie_is_refused(
    cookie_app: tuple[str, httpx.Client], headers: dict[str, str]
) -> None:
    base, client = cookie_app
    refused = client.post(base + "/events", json={"event_type": "chat"}, headers=headers)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert sent_titles(base, client) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"event_type": "chat", "title": "csrf"}'),
        ("application/x-www-form-urlencoded", b"event_type=chat&title=csrf"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'),
        (None, b'{"event_type": "chat", "title": "csrf"}'),
    ],
)
def test_only_json_is_accepted(
    cookie_app: tuple[str, httpx.Client], content_type: str | None, body: bytes
) -> None:
    base, client = cookie_app
    headers = {} if content_type is None else {"Content-Type": content_type}
    refused = client.post(base + "/events", content=body, headers=headers)
    assert refused.status_code == 415 and refused.json()["error"] == "unsupported_media_type"
    assert sent_titles(base, client) == []


def test_same_site_trusted_and_token_requests_go_through(
    cookie_app: tuple[str, httpx.Client],
) -> None:
    base, client = cookie_app
    own_origin = base.split("/n", 1)[0]
    payload = {"event_type": "chat", "title": "ok"}
    for headers in (
        {"Origin": own_origin},
        {"Sec-Fetch-Site": "same-origin"},
        {},  # neither header: not a browser's cross-site post
        {"Origin": "https://app.example.com", "Sec-Fetch-Site": "cross-site"},  # trusted
    ):
        assert client.post(base + "/events", json=payload, headers=headers).status_code == 202
    crossing = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    with httpx.Client(timeout=WAIT) as token_client:
        with_token = token_client.post(base + "/events", json=payload, headers={**crossing, **BOB})
        assert with_token.status_code == 202
    assert sent_titles(base, client) == ["ok"] * 5


def test_a_cross_site_websocket_riding_on_cookies_is_refused(
    cookie_app: tuple[str, httpx.Client],
) -> None:
    base, _ = cookie_app
    url = base.replace("http://", "ws://") + "/ws"
    with pytest.raises(InvalidStatus) as refused:
        connect(
            url,
            origin=Origin("http://evil.example"),
            additional_headers={"Cookie": "sid=s-bob"},
            open_timeout=WAIT,
        )
    assert refused.value.response.status_code == 403
    for headers in ({"Cookie": "sid=s-bob"}, {"Authorization": "Bearer t-bob"}):
        origin = None if "Cookie" in headers else Origin("http://evil.example")
        with connect(
            url,
            origin=origin,
            additional_headers=headers,
            open_timeout=WAIT,
        ) as ws:
            ws.send(json.dumps({"action": "subscribe", "stream": "me"}))
            assert json.loads(ws.recv(timeout=WAIT)) == {"type": "subscribed", "stream": "user:bob"}


def test_a_token_never_exempts_a_cross_site_request_that_carries_cookies(
    serve: Serve, comments: Notifications
) -> None:
    """A junk (or even a valid) token beside the session cookie is no proof of intent."""
    served = serve(
        comments,
        authenticate=cookie_or_token,
        authorize=EXAMPLE["authorize"],
        authorize_send=EXAMPLE["authorize_send"],
        allow_query_token=True,
    )
    evil = Origin("http://evil.example")
    cookie = {"Cookie": "sid=s-bob"}
    for query, headers in (
        ("?token=junk", cookie),
        ("?token=t-bob", cookie),
        ("", {**cookie, "Authorization": "Bearer junk"}),
        ("", {**cookie, "Authorization": "Bearer t-bob"}),
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(served.ws + query, origin=evil, additional_headers=headers, open_timeout=WAIT)
        assert refused.value.response.status_code == 403, (query, headers)
    with httpx.Client(timeout=WAIT, cookies={"sid": "s-bob"}) as client:
        payload = {"event_type": "chat", "title": "csrf"}
        for url, headers in (
            (served.base + "/events", {"Authorization": "Bearer junk"}),
            (served.base + "/events", {"Authorization": "Bearer t-bob"}),
            (served.base + "/events?token=junk", {}),
        ):
            refused_post = client.post(url, json=payload, headers={"Origin": evil, **headers})
            assert refused_post.status_code == 403, (url, headers)
            assert refused_post.json()["error"] == "forbidden"
        assert sent_titles(served.base, client) == []
    # Without cookies a token is the request's own credential, from any page.
    with connect(served.ws + "?token=t-bob", origin=evil, open_timeout=WAIT) as ws:
        ws.send(json.dumps({"action": "subscribe", "stream": "me"}))
        assert json.loads(ws.recv(timeout=WAIT)) == {"type": "subscribed", "stream": "user:bob"}


def test_an_origin_with_another_scheme_is_another_site(
    cookie_app: tuple[str, httpx.Client],
) -> None:
    base, client = cookie_app
    server = base.split("/n", 1)[0]  # http://127.0.0.1:PORT
    https_twin = Origin(server.replace("http://", "https://"))
    payload = {"event_type": "chat", "title": "ok"}
    refused = client.post(base + "/events", json=payload, headers={"Origin": https_twin})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    with pytest.raises(InvalidStatus) as closed:
        connect(
            base.replace("http://", "ws://") + "/ws",
            origin=https_twin,
            additional_headers={"Cookie": "sid=s-bob"},
            open_timeout=WAIT,
        )
    assert closed.value.response.status_code == 403
    assert sent_titles(base, client) == []
    # Behind a proxy, the scheme the app sees counts: uvicorn applies X-Forwarded-Proto from
    # 127.0.0.1 (its forwarded_allow_ips default), so the https page is the server's own.
    proxied = {"Origin": https_twin, "X-Forwarded-Proto": "https"}
    assert client.post(base + "/events", json=payload, headers=proxied).status_code == 202
    assert (
        client.post(base + "/events", json=payload, headers={"Origin": server}).status_code == 202
    )
    assert sent_titles(base, client) == ["ok", "ok"]
