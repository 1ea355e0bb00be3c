"""examples/correspondence: token-authenticated SSE and WebSocket streams of conversations, for real.

The example runs as its own process (``python -m examples.correspondence``,
uvicorn on 127.0.0.1); the test is a set of clients over HTTP and WebSocket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from examples.correspondence.app import TOKENS
from notify_flask.testing import read_events

WAIT = 20.0


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth(user: str) -> dict[str, str]:
    return bearer(TOKENS[user])


class Client:
    """The API and the streams of the running example."""

    def __init__(self, port: int, exits: ExitStack) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/notifications/ws"
        self.http = exits.enter_context(httpx.Client(base_url=self.base, timeout=WAIT))
        self.exits = exits

    def post(self, user: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=payload, headers=auth(user))
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def sse(self, path: str, headers: dict[str, str]) -> httpx.Response:
        response = self.exits.enter_context(self.http.stream("GET", path, headers=headers))
        return response

    def websocket(self, token: str) -> ClientConnection:
        return self.exits.enter_context(
            connect(self.ws_url, additional_headers=bearer(token), open_timeout=WAIT)
        )


@contextmanager
def running_example(
    processes: Any, port: int, directory: Path, wait_serving: Callable[..., httpx.Response]
) -> Iterator[Client]:
    server = processes.start(
        "-m",
        "examples.correspondence",
        PORT=str(port),
        CORRESPONDENCE_DB=f"sqlite:///{directory / 'correspondence.db'}",
    )
    # Anonymous: refused at once, which also tells that the server is up.
    assert (
        wait_serving(f"http://127.0.0.1:{port}/notifications/me/stream", server).status_code == 401
    )
    with ExitStack() as exits:
        yield Client(port, exits)


def ask(ws: ClientConnection, **message: Any) -> dict[str, Any]:
    ws.send(json.dumps(message))
    return receive(ws)


def receive(ws: ClientConnection) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(ws.recv(timeout=WAIT))
    return answer


def bodies(response: httpx.Response, count: int) -> list[str]:
    events = read_events(response, count)
    assert {e["event"] for e in events} == {"message"}
    return [e["data"]["body"] for e in events]


def test_participants_get_messages_live_over_sse_and_websocket_and_others_nothing(
    processes: Any, port: int, tmp_path: Path, wait_serving: Callable[..., httpx.Response]
) -> None:
    with running_example(processes, port, tmp_path, wait_serving) as client:
        # A wrong token is refused, on SSE and on the WebSocket.
        wrong = client.http.get("/notifications/me/stream", headers=bearer("bob-token-x"))
        assert wrong.status_code == 401
        intruder = client.websocket("not-a-token")
        refused = ask(intruder, action="subscribe", stream="me")
        assert (refused["type"], refused["error"]) == ("error", "unauthorized")

        lunch = client.post(
            "alice", "/correspondences", {"subject": "Lunch", "participants": ["bob"]}
        )
        assert (lunch["channel"], lunch["participants"]) == ("correspondence-1", ["alice", "bob"])
        messages = f"/correspondences/{lunch['id']}/messages"

        bob_sse = client.sse("/notifications/me/stream", auth("bob"))
        carol_sse = client.sse("/notifications/me/stream", auth("carol"))
        assert (bob_sse.status_code, carol_sse.status_code) == (200, 200)
        bob_ws = client.websocket(TOKENS["bob"])
        assert ask(bob_ws, action="subscribe", stream="me")["stream"] == "user:bob"
        subscribed = ask(bob_ws, action="subscribe", stream="correspondence-1")
        assert subscribed == {"type": "subscribed", "stream": "event-hub-correspondence-1"}

        # carol takes no part in Lunch: its channel is closed to her, on SSE and WebSocket.
        carol_ws = client.websocket(TOKENS["carol"])
        denied = ask(carol_ws, action="subscribe", stream="correspondence-1")
        assert (denied["type"], denied["error"]) == ("error", "forbidden")
        channel = client.http.get("/notifications/correspondence-1/stream", headers=auth("carol"))
        assert channel.status_code == 403
        assert ask(carol_ws, action="subscribe", stream="me")["stream"] == "user:carol"
        posted = client.http.post(messages, json={"body": "me too?"}, headers=auth("carol"))
        assert posted.status_code == 403

        # A message is published on create: to bob's own stream and to the channel.
        client.post("alice", messages, {"body": "noon?"})
        assert bodies(bob_sse, 1) == ["noon?"]
        first = [receive(bob_ws), receive(bob_ws)]
        assert sorted((m["stream"], m["event"]["body"]) for m in first) == [
            ("event-hub-correspondence-1", "noon?"),
            ("user:bob", "noon?"),
        ]
        assert first[0]["event"]["sender"] == "alice"
        assert first[0]["event"]["correspondence"] == lunch["id"]

        # Unsubscribed at run time: the channel stops, bob's own stream goes on.
        left = ask(bob_ws, action="unsubscribe", stream="correspondence-1")
        assert left == {"type": "unsubscribed", "stream": "event-hub-correspondence-1"}
        client.post("bob", messages, {"body": "noon!"})
        only = receive(bob_ws)
        assert (only["stream"], only["event"]["body"]) == ("user:bob", "noon!")
        # The next message is the answer to this request: no channel message came in between.
        assert ask(bob_ws, action="subscribe", stream="me")["type"] == "subscribed"

        # Subscribed again at run time: the channel's new messages come back.
        assert ask(bob_ws, action="subscribe", stream="correspondence-1")["type"] == "subscribed"
        client.post("alice", messages, {"body": "booked"})
        again = sorted(
            (m["stream"], m["event"]["body"]) for m in (receive(bob_ws), receive(bob_ws))
        )
        assert again == [("event-hub-correspondence-1", "booked"), ("user:bob", "booked")]

        # carol's first message is one of a correspondence she takes part in: Lunch sent her nothing.
        tea = client.post(
            "alice", "/correspondences", {"subject": "Tea", "participants": ["carol"]}
        )
        client.post("alice", f"/correspondences/{tea['id']}/messages", {"body": "tea, carol?"})
        assert bodies(carol_sse, 1) == ["tea, carol?"]
        mine = receive(carol_ws)
        assert (mine["stream"], mine["event"]["body"]) == ("user:carol", "tea, carol?")
        # ...and bob, who is not in Tea, got Lunch's messages only.
        client.post("bob", messages, {"body": "see you"})
        assert bodies(bob_sse, 3) == ["noon!", "booked", "see you"]


def test_a_malformed_body_is_a_json_4xx_and_creates_nothing(tmp_path: Path) -> None:
    from examples.correspondence.app import create_app
    from notify_starlette.testing import serve

    app, notifications = create_app(f"sqlite:///{tmp_path / 'bad.db'}")
    bad_bodies = {
        "x": 400,
        "": 400,
        "[" * 100_000 + "]" * 100_000: 400,
        "[1]": 422,
        "null": 422,
        '{"participants": "bob"}': 422,
        '{"participants": {"bob": 1}}': 422,
        '{"participants": [1]}': 422,
        '{"participants": [["bob"]]}': 422,
        '{"subject": 5}': 422,
        '"\\ud800"': 422,
        '{"participants": ["\\ud800"]}': 422,
        '{"subject": "\\ud800"}': 422,
    }
    try:
        with serve(app) as base, httpx.Client(base_url=base, timeout=WAIT) as http:
            headers = {**auth("alice"), "Content-Type": "application/json"}
            got = {
                body: http.post("/correspondences", content=body, headers=headers)
                for body in bad_bodies
            }
            assert {body: r.status_code for body, r in got.items()} == bad_bodies
            assert all(r.headers["content-type"] == "application/json" for r in got.values())
            assert all(isinstance(r.json()["error"], str) for r in got.values())
            made = http.post("/correspondences", json={"participants": ["bob"]}, headers=headers)
            assert made.status_code == 201 and made.json()["id"] == 1, "nothing made before"
            path = "/correspondences/1/messages"
            for body, status in {
                "x": 400,
                "[1]": 422,
                '{"body": 5}': 422,
                '{"body": "\\udc80"}': 422,
            }.items():
                answer = http.post(path, content=body, headers=headers)
                assert (answer.status_code, answer.headers["content-type"]) == (
                    status,
                    "application/json",
                ), body
            sent = http.post(path, json={"body": "hello"}, headers=headers)
            assert sent.status_code == 201
            history = http.get("/notifications/me/events", headers=auth("bob")).json()
            assert [item["event"]["body"] for item in history["events"]] == ["hello"]
    finally:
        notifications.close()
