"""notify-flask under the access rules docs/web.md shows, loaded from the page itself.

Private events stay off the hub's stream, the owner reads their own stream,
the sender is the signed-in user, and cookie-authenticated writes are
JSON-only and refused cross-site.
"""

from __future__ import annotations

import ast
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask, session
from werkzeug.test import TestResponse

from notify_flask import stream_blueprint
from notify_flask.testing import read_events, serve
from notifycore import Event, Notifications, PushConsumer


def json_of(response: TestResponse) -> Any:
    """The JSON body of a test client's response (there must be one)."""
    data = response.get_json()
    assert data is not None, response.data
    return data


WEB_MD = Path(__file__).resolve().parents[3] / "docs" / "web.md"
FEED = "/notifications/event-hub-Comments"


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


#: The Flask example, and the older way of authorising sends ("send" through authorize).
EXAMPLES = {
    "authorize_send": doc_functions("## Flask (`notify-flask`)", session=session),
    "send_permission": doc_functions("## Who may send"),
}


def make_app(rules: dict[str, Any], **options: Any) -> tuple[Flask, Notifications]:
    app = Flask("secure")
    app.config.update(BACKEND="memory", SECRET_KEY="test")
    notifications = Notifications(app, environ={})
    notifications.create_hub("Comments").register_consumer(PushConsumer())
    authenticate = rules.get("authenticate") or EXAMPLES["authorize_send"]["authenticate"]
    if "authorize_send" in rules:
        options["authorize_send"] = rules["authorize_send"]
    app.register_blueprint(
        stream_blueprint(
            authenticate=authenticate, authorize=rules["authorize"], heartbeat=0.2, **options
        )
    )

    @app.get("/login/<user>")
    def login(user: str) -> str:
        session["user_id"] = user
        return user

    return app, notifications


@pytest.fixture(params=sorted(EXAMPLES))
def docs_app(request: pytest.FixtureRequest) -> Iterator[tuple[Flask, Notifications, str]]:
    app, notifications = make_app(EXAMPLES[request.param])
    yield app, notifications, request.param
    notifications.close()


def titles(client: Any, path: str) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return [item["event"]["title"] for item in response.json()["events"]]


def test_the_owner_reads_their_stream_and_private_events_stay_off_the_feed(
    docs_app: tuple[Flask, Notifications, str],
) -> None:
    app, notifications, _ = docs_app
    with serve(app) as base, httpx.Client(base_url=base, timeout=20) as bob:
        bob.get("/login/bob")
        with bob.stream("GET", "/notifications/me/stream") as mine:
            assert mine.status_code == 200, "the owner always reads their own stream"
            threading.Timer(
                0.2,
                lambda: (
                    notifications.send(Event(None, "chat", "for alice", recipients=["alice"])),
                    notifications.send(Event(None, "chat", "for bob", recipients=["bob"])),
                    notifications.send(Event(None, "chat", "for everyone")),
                ),
            ).start()
            assert [e["data"]["title"] for e in read_events(mine, 1)] == ["for bob"]
        with bob.stream("GET", FEED + "/stream") as feed:
            assert feed.status_code == 200
        # Replaying the whole feed gives bob none of the private events.
        assert titles(bob, FEED + "/events") == ["for everyone"]
        anonymous = httpx.get(base + "/notifications/me/stream")
        assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"


def post(client: Any, payload: dict[str, Any], **headers: str) -> Any:
    return client.post("/notifications/events", json=payload, headers=headers)


def test_the_sender_is_the_signed_in_user(docs_app: tuple[Flask, Notifications, str]) -> None:
    app, _, way = docs_app
    client = app.test_client()
    assert post(client, {"event_type": "chat", "title": "x"}).status_code == 401
    client.get("/login/bob")
    sent = post(client, {"event_type": "chat", "title": "unsigned"})
    assert sent.status_code == 202 and json_of(sent)["sender"] == "bob"
    forged = post(client, {"event_type": "chat", "title": "forged", "sender": "system"})
    if way == "authorize_send":
        # authorize_send sees the claimed sender, and the docs' example refuses another one.
        assert forged.status_code == 403 and json_of(forged)["error"] == "forbidden"
    else:
        # The "send" permission cannot see the event: the sender becomes the principal.
        assert forged.status_code == 202 and json_of(forged)["sender"] == "bob"
    senders = {
        item["event"]["title"]: item["event"]["sender"]
        for item in json_of(client.get(FEED + "/events"))["events"]
    }
    assert "system" not in senders.values()
    assert senders["unsigned"] == "bob"


def test_authorize_send_may_let_a_sender_through() -> None:
    def authorize_send(user: Any, event: Event) -> bool:
        return bool(user == "admin" or event.sender == user)

    rules = {**EXAMPLES["authorize_send"], "authorize_send": authorize_send}
    app, notifications = make_app(rules)
    client = app.test_client()
    client.get("/login/admin")
    sent = post(client, {"event_type": "chat", "title": "notice", "sender": "system"})
    assert sent.status_code == 202 and json_of(sent)["sender"] == "system"
    notifications.close()


def test_the_send_permission_never_passes_a_claimed_sender_through() -> None:
    """An int user id is the sender (and owns user:42); with no id, the claim is cleared."""
    app = Flask("int-ids")
    app.config.update(BACKEND="memory", SECRET_KEY="test")
    notifications = Notifications(app, environ={})
    notifications.create_hub("Comments").register_consumer(PushConsumer())

    def authorize(user: Any, stream: str) -> bool:
        # Anyone may send, signed-in users read the feed: the "send" pseudo-stream only.
        return stream == "send" or (user is not None and stream == "event-hub-Comments")

    app.register_blueprint(
        stream_blueprint(authenticate=lambda request: session.get("user_id"), authorize=authorize)
    )

    @app.get("/login/<int:uid>")
    def login(uid: int) -> str:
        session["user_id"] = uid
        return "ok"

    forged = {"event_type": "chat", "title": "forged", "sender": "system"}
    anonymous = app.test_client()
    sent = post(anonymous, forged)
    assert sent.status_code == 202 and json_of(sent)["sender"] == "", "no id: no sender"
    user = app.test_client()
    user.get("/login/42")
    sent = post(user, forged)
    assert sent.status_code == 202 and json_of(sent)["sender"] == "42"
    notifications.send(Event(None, "chat", "for 42", recipients=["42"]))
    mine = user.get("/notifications/me/events")
    assert mine.status_code == 200 and json_of(mine)["stream"] == "user:42"
    assert [item["event"]["title"] for item in json_of(mine)["events"]] == ["for 42"]
    senders = [item["event"]["sender"] for item in json_of(user.get(FEED + "/events"))["events"]]
    assert senders == ["", "42"]
    notifications.close()


# -- cross-site requests ------------------------------------------------------------------------

CROSS_SITE = [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://localhost.evil.example"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_post_with_the_session_cookie_is_refused(headers: dict[str, str]) -> None:
    app, notifications = make_app(EXAMPLES["authorize_send"])
    client = app.test_client()
    client.get("/login/bob")
    refused = post(client, {"event_type": "chat", "title": "csrf"}, **headers)
    assert refused.status_code == 403 and json_of(refused)["error"] == "forbidden"
    assert json_of(client.get(FEED + "/events"))["events"] == []
    notifications.close()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"event_type": "chat", "title": "csrf"}'),
        ("application/x-www-form-urlencoded", b"event_type=chat&title=csrf"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="a"'),
        ("application/jsonx", b'{"event_type": "chat", "title": "csrf"}'),
        (None, b'{"event_type": "chat", "title": "csrf"}'),
    ],
)
def test_only_json_is_accepted(content_type: str | None, body: bytes) -> None:
    app, notifications = make_app(EXAMPLES["authorize_send"])
    client = app.test_client()
    client.get("/login/bob")
    headers = {"Origin": "http://localhost"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    refused = client.post("/notifications/events", data=body, headers=headers)
    assert refused.status_code == 415 and json_of(refused)["error"] == "unsupported_media_type"
    assert json_of(client.get(FEED + "/events"))["events"] == []
    notifications.close()


def test_same_site_trusted_and_token_requests_go_through() -> None:
    tokens = {"t-bob": "bob"}

    def authenticate(request: Any) -> Any:
        header = request.headers.get("Authorization", "")
        return tokens.get(header.removeprefix("Bearer ")) or session.get("user_id")

    rules = {**EXAMPLES["authorize_send"], "authenticate": authenticate}
    app, notifications = make_app(rules, trusted_origins=["https://app.example.com"])
    cookie = app.test_client()
    cookie.get("/login/bob")
    payload = {"event_type": "chat", "title": "ok"}
    assert post(cookie, payload, Origin="http://localhost").status_code == 202
    assert post(cookie, payload, **{"Sec-Fetch-Site": "same-origin"}).status_code == 202
    assert post(cookie, payload).status_code == 202, "no Origin: not a browser's cross-site post"
    assert post(cookie, payload, Origin="https://app.example.com/").status_code == 202
    token = app.test_client()
    crossing = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert post(token, payload, Authorization="Bearer t-bob", **crossing).status_code == 202
    assert len(json_of(cookie.get(FEED + "/events"))["events"]) == 5
    notifications.close()


def cookie_or_token_rules() -> dict[str, Any]:
    tokens = {"t-bob": "bob"}

    def authenticate(request: Any) -> Any:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") or request.args.get("token", "")
        return tokens.get(token) or session.get("user_id")

    return {**EXAMPLES["authorize_send"], "authenticate": authenticate}


def test_a_token_never_exempts_a_cross_site_request_that_carries_cookies() -> None:
    """A junk (or even a valid) token beside the session cookie is no proof of intent."""
    app, notifications = make_app(cookie_or_token_rules(), allow_query_token=True)
    cookie = app.test_client()
    cookie.get("/login/bob")
    payload = {"event_type": "chat", "title": "csrf"}
    evil = {"Origin": "http://evil.example"}
    for path, headers in (
        ("/notifications/events", {"Authorization": "Bearer junk"}),
        ("/notifications/events", {"Authorization": "Bearer t-bob"}),
        ("/notifications/events?token=junk", {}),
        ("/notifications/events?token=t-bob", {}),
    ):
        refused = cookie.post(path, json=payload, headers={**evil, **headers})
        assert refused.status_code == 403 and json_of(refused)["error"] == "forbidden", path
    assert json_of(cookie.get(FEED + "/events"))["events"] == []
    # Without cookies a token is the request's own credential, from any page.
    token = app.test_client()
    sent = post(token, payload, Authorization="Bearer t-bob", **evil)
    assert sent.status_code == 202 and json_of(sent)["sender"] == "bob"
    in_query = token.post("/notifications/events?token=t-bob", json=payload, headers=evil)
    assert in_query.status_code == 202
    notifications.close()


def test_an_origin_with_another_scheme_is_another_site() -> None:
    from werkzeug.middleware.proxy_fix import ProxyFix

    app, notifications = make_app(EXAMPLES["authorize_send"])
    client = app.test_client()
    client.get("/login/bob")
    payload = {"event_type": "chat", "title": "ok"}
    refused = post(client, payload, Origin="https://localhost")
    assert refused.status_code == 403 and json_of(refused)["error"] == "forbidden"
    forwarded = {"Origin": "https://localhost", "X-Forwarded-Proto": "https"}
    assert post(client, payload, **forwarded).status_code == 403, "no ProxyFix: not believed"
    assert json_of(client.get(FEED + "/events"))["events"] == []
    # The scheme the app sees counts: behind ProxyFix, X-Forwarded-Proto says it.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)  # type: ignore[method-assign]
    assert post(client, payload, **forwarded).status_code == 202
    assert post(client, payload, Origin="https://localhost").status_code == 403
    secure = app.test_client()
    secure.get("/login/bob", base_url="https://localhost")
    sent = secure.post(
        "/notifications/events",
        json=payload,
        headers={"Origin": "https://localhost"},
        base_url="https://localhost",
    )
    assert sent.status_code == 202
    assert len(json_of(client.get(FEED + "/events"))["events"]) == 2
    notifications.close()


def test_a_send_timeout_must_be_positive() -> None:
    for wrong in (0, -1.0):
        with pytest.raises(ValueError, match="send_timeout must be > 0 or None"):
            stream_blueprint(send_timeout=wrong)
    stream_blueprint(send_timeout=None)
