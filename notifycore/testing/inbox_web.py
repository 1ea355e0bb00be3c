"""The inbox and preference routes' tests, run by every web adapter on its own client.

Subclass :class:`InboxRoutesContract` and give ``make_client(notifications,
authenticate)``: an object with ``call(method, path, *, headers, body) ->
(status, json)`` for the adapter mounted at ``/notifications`` (and a
``close()``, called at the end, when it has one). Users sign
in with ``Authorization: Bearer tok-<user>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

from notifycore import Event, Notifications, PushConsumer
from notifycore.web.access import bearer_token

__all__ = ["InboxClient", "InboxRoutesContract"]

PREFIX = "/notifications"


class InboxClient(Protocol):
    def call(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, Any]: ...


def _authenticate(request: Any) -> str | None:
    token = bearer_token(request.headers.get("Authorization"))
    return token[len("tok-") :] if token and token.startswith("tok-") else None


class InboxRoutesContract:
    """The same routes, answers and errors on every adapter (``docs/inbox.md``)."""

    def make_client(
        self, notifications: Notifications, authenticate: Callable[[Any], Any]
    ) -> InboxClient:
        raise NotImplementedError

    @pytest.fixture
    def site(self) -> Iterator[tuple[Notifications, InboxClient]]:
        notifications = Notifications(config={"BACKEND": "memory", "INBOX": "on"}, environ={})
        hub = notifications.create_hub("comments")
        hub.register_consumer(PushConsumer(), name="push")
        hub.register_consumer(lambda e: None, name="mail", mode="queued", queue="mail")
        client = self.make_client(notifications, _authenticate)
        try:
            yield notifications, client
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
            notifications.close()

    @staticmethod
    def as_user(
        client: InboxClient,
        user: str | None,
        method: str,
        path: str,
        payload: Any = None,
        **kw: Any,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer tok-{user}"} if user else {}
        body = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(payload).encode()
        headers.update(kw.pop("headers", {}))
        return client.call(method, PREFIX + path, headers=headers, body=body, **kw)

    def test_list_count_read_and_archive_ones_own_inbox(
        self, site: tuple[Notifications, InboxClient]
    ) -> None:
        notifications, client = site
        events = [Event(None, "comment", f"n{n}", recipients=["alice"]) for n in range(3)]
        for event in events:
            notifications.send(event)
        notifications.send(Event(None, "comment", "bob's", recipients=["bob"]))
        status, page = self.as_user(client, "alice", "GET", "/me/inbox?limit=2")
        assert status == 200 and page["unread"] == 3
        assert [i["event"]["title"] for i in page["items"]] == ["n2", "n1"]
        assert page["items"][0]["state"] == "unread" and page["next"] == page["items"][1]["cursor"]
        status, rest = self.as_user(client, "alice", "GET", f"/me/inbox?before={page['next']}")
        assert [i["event"]["title"] for i in rest["items"]] == ["n0"] and rest["next"] is None
        assert self.as_user(client, "alice", "GET", "/me/inbox/unread") == (200, {"unread": 3})
        status, changed = self.as_user(
            client, "alice", "POST", "/me/inbox/read", {"ids": [events[0].event_id]}
        )
        assert status == 200 and changed == {
            "changed": [events[0].event_id],
            "count": 1,
            "unread": 2,
        }
        status, changed = self.as_user(
            client, "alice", "POST", "/me/inbox/archive", {"ids": [events[1].event_id]}
        )
        assert status == 200 and changed["unread"] == 1
        status, archived = self.as_user(client, "alice", "GET", "/me/inbox?archived=true")
        assert [i["id"] for i in archived["items"]] == [events[1].event_id]
        status, changed = self.as_user(client, "alice", "POST", "/me/inbox/read", {"all": True})
        assert status == 200 and changed["unread"] == 0 and changed["count"] == 1
        # Bob's inbox is his: alice's calls never reach it, whatever ids she names.
        bob_item = notifications.inbox("bob").list()[0].id
        status, changed = self.as_user(
            client, "alice", "POST", "/me/inbox/read", {"ids": [bob_item]}
        )
        assert status == 200 and changed["count"] == 0
        assert notifications.inbox("bob").unread_count() == 1
        status, bobs = self.as_user(client, "bob", "GET", "/me/inbox")
        assert [i["event"]["title"] for i in bobs["items"]] == ["bob's"]

    def test_preferences_are_read_and_replaced_and_enforced(
        self, site: tuple[Notifications, InboxClient]
    ) -> None:
        notifications, client = site
        assert self.as_user(client, "bob", "GET", "/me/preferences") == (
            200,
            {
                "preferences": {},
                "defaults": {},
                "channels": ["inbox", "mail", "push"],
                "hubs": ["hub:comments"],
            },
        )
        wanted = {"preferences": {"comment": {"mail": False}}}
        assert self.as_user(client, "bob", "PUT", "/me/preferences", wanted) == (200, wanted)
        assert (
            self.as_user(client, "bob", "GET", "/me/preferences")[1]["preferences"]
            == (wanted["preferences"])
        )
        notifications.send(Event(None, "comment", "x", recipients=["bob"]))
        assert notifications.backend.browse("mail") == []
        status, error = self.as_user(
            client, "bob", "PUT", "/me/preferences", {"preferences": {"comment": {"mail": "no"}}}
        )
        assert status == 422 and error["error"] == "invalid_preferences"
        assert notifications.preferences("bob") == wanted["preferences"]
        assert notifications.preferences("alice") == {}

    def test_anonymous_cross_site_and_malformed_requests_are_refused(
        self, site: tuple[Notifications, InboxClient]
    ) -> None:
        _, client = site
        for method, path in (
            ("GET", "/me/inbox"),
            ("GET", "/me/inbox/unread"),
            ("GET", "/me/preferences"),
        ):
            status, error = self.as_user(client, None, method, path)
            assert status == 401 and error["error"] == "unauthorized"
        status, error = self.as_user(client, None, "POST", "/me/inbox/read", {"all": True})
        assert status == 401
        cross = {"Origin": "https://evil.example", "Cookie": "session=1"}
        status, error = client.call(
            "POST",
            PREFIX + "/me/inbox/read",
            headers={"Content-Type": "application/json", **cross},
            body=b'{"all": true}',
        )
        assert status == 403 and error["error"] == "forbidden"
        status, error = client.call(
            "POST",
            PREFIX + "/me/inbox/read",
            headers={"Authorization": "Bearer tok-alice", "Content-Type": "text/plain"},
            body=b'{"all": true}',
        )
        assert status == 415 and error["error"] == "unsupported_media_type"
        for query in ("limit=0", "limit=x", "limit=201", "before=abc", "archived=maybe"):
            status, error = self.as_user(client, "alice", "GET", f"/me/inbox?{query}")
            assert status == 400 and error["error"] == "bad_request", query
        status, error = self.as_user(client, "alice", "DELETE", "/me/inbox")
        assert status == 405 and error["error"] == "method_not_allowed"
        status, error = self.as_user(
            client, "alice", "POST", "/me/preferences", {"preferences": {}}
        )
        assert status == 405

    def test_any_body_gets_a_json_answer_never_a_crash(
        self, site: tuple[Notifications, InboxClient]
    ) -> None:
        from hypothesis import HealthCheck, given, settings  # a test dependency, asked here only
        from hypothesis import strategies as st

        notifications, client = site
        notifications.send(Event(None, "comment", "x", recipients=["alice"]))
        scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
        values = st.recursive(
            scalars,
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["ids", "all", "up_to", "preferences", "x"])
                    | st.text(max_size=4),
                    inner,
                    max_size=3,
                )
            ),
            max_leaves=10,
        )
        raw = st.binary(max_size=40)

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            st.sampled_from(
                [
                    ("POST", "/me/inbox/read"),
                    ("POST", "/me/inbox/archive"),
                    ("PUT", "/me/preferences"),
                ]
            ),
            values.map(lambda v: json.dumps(v).encode()) | raw,
        )
        def check(route: tuple[str, str], body: bytes) -> None:
            method, path = route
            status, answer = client.call(
                method,
                PREFIX + path,
                headers={"Authorization": "Bearer tok-alice", "Content-Type": "application/json"},
                body=body,
            )
            assert status in (200, 400, 422), (status, answer)
            assert isinstance(answer, dict)
            if status != 200:
                assert isinstance(answer["error"], str) and answer["message"]

        check()
        # Whatever was sent, alice's inbox holds what it held, in a known state.
        assert (
            len(notifications.inbox("alice").list(archived=False))
            + len(notifications.inbox("alice").list(archived=True))
            == 1
        )
