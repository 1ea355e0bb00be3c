"""An inbox check every backend that keeps inboxes runs on its own configuration.

:func:`check_unread_count_across_processes` runs several sender processes on one
backend at once, each sending, marking read, marking all read and archiving, and
then checks that every item is kept once and that the unread count is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from notifycore import Event, Notifications

__all__ = ["check_unread_count_across_processes"]

_SENDER = textwrap.dedent(
    """
    import json, sys
    from notifycore import Event, Notifications
    n = Notifications(config=json.loads(sys.argv[1]), environ={})
    n.create_hub("all")
    inbox = n.inbox("alice")
    for i in range(30):
        e = Event(None, "x", f"{sys.argv[2]}-{i}", recipients=["alice", "bob"])
        n.send(e)
        if i % 2:
            inbox.mark_read([e.event_id])
        if i % 7 == 0:
            inbox.mark_all_read()
        if i % 5 == 0:
            inbox.archive([e.event_id])
    n.close()
    """
)


def check_unread_count_across_processes(config: Mapping[str, Any]) -> None:
    """Run three senders at once with ``config`` (JSON values; ``INBOX`` on), each
    sending 30 events to alice and bob while alice marks some read, all read and
    archived; then each inbox holds every event once, its unread count is the number of
    unread items listed, bob's are all unread, and one more event is unread at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYCORE_")}
    settings = json.dumps(dict(config))
    started = [
        subprocess.Popen([sys.executable, "-c", _SENDER, settings, f"p{n}"], env=env)
        for n in range(3)
    ]
    try:
        for process in started:
            assert process.wait(180) == 0, "a sender process failed (its output is above)"
    finally:
        for process in started:
            process.kill()
    notifications = Notifications(config=dict(config), environ={})
    try:
        for user in ("alice", "bob"):
            inbox = notifications.inbox(user)
            listed = inbox.list(limit=200)
            archived = inbox.list(limit=200, archived=True)
            assert len(listed) + len(archived) == 90
            assert inbox.unread_count() == sum(i.unread for i in listed)
        assert notifications.inbox("bob").unread_count() == 90
        notifications.create_hub("all")
        event = Event(None, "x", "one more", recipients=["bob"])
        notifications.send(event)
        assert notifications.inbox("bob").is_unread(event.event_id)
        assert notifications.inbox("bob").unread_count() == 90 + 1
    finally:
        notifications.close()
