"""Flask-Notifications' walkthrough on notifycore: a hub, a composed filter, three consumers, a live page.

The steps of the original guide, in order: create the extension on a Flask
app, create a hub, filter it with ``WithEventType("test") &
Not(BeforeDate(now))``, register a decorated consumer, a push consumer and a
log consumer, then send one event that passes the filter and one that does
not. The page at ``/`` follows the hub's stream over Server-Sent Events.

Run it with ``python -m examples.flask_notifications_walkthrough`` (files go
to ``$WALKTHROUGH_DIR``, the working directory by default).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, jsonify
from werkzeug.wrappers import Response

from notify_flask import stream_blueprint
from notifycore import Event, LogConsumer, Notifications, PushConsumer, SendResult
from notifycore.filters import BeforeDate, Not, WithEventType

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Flask-Notifications walkthrough</title></head>
<body>
  <h1>Hub {hub_id}</h1>
  <p>Stream: <span id="status">connecting</span>.
     <button id="send">Send the two events</button> (only one passes the filter)</p>
  <ul id="events"></ul>
  <script>
    const source = new EventSource("{stream_url}");
    source.onopen = () => {{ document.getElementById("status").textContent = "live"; }};
    // The SSE event name is the event type: the hub only ever pushes "test" events.
    source.addEventListener("test", (e) => {{
      const event = JSON.parse(e.data);
      const li = document.createElement("li");
      li.textContent = `${{event.title}}: ${{event.body}} (from ${{event.sender}})`;
      document.getElementById("events").appendChild(li);
    }});
    document.getElementById("send").onclick = () => fetch("{send_url}", {{method: "POST"}});
  </script>
</body>
</html>
"""


def create_app(directory: str | os.PathLike[str] | None = None) -> tuple[Flask, Notifications]:
    """The app and its notifications; the database, ``events.log`` and ``received.txt`` go in ``directory``."""
    folder = Path(directory or os.environ.get("WALKTHROUGH_DIR", ".")).resolve()
    app = Flask(__name__)
    # The default backend, an SQLite file: `notifycore tail TestHub` in another terminal sees it too.
    app.config.update(BACKEND="sqlite", BACKEND_URL=f"sqlite:///{folder / 'walkthrough.db'}")

    # Step 1: the extension, bound to the app (or Notifications() then init_app(app)).
    notifications = Notifications(app)

    # Step 2: a hub. Its id comes from the label, so every process finds the same hub.
    hub = notifications.create_hub("TestHub")
    assert hub.hub_id == "event-hub-TestHub"

    # Step 3: a composed filter: "test" events, sent from now on.
    hub.filter_by(WithEventType("test") & Not(BeforeDate(datetime.now(UTC))))

    # Step 4: consumers. A decorated function, named explicitly so that queued jobs could find it.
    @hub.register_consumer(name="app.write_to_file")
    def write_to_file(event: Event) -> None:
        with open(folder / "received.txt", "a", encoding="utf-8") as received:
            received.write(f"{event['title']}\n")

    # The push consumer publishes to the hub's stream, which the page below follows.
    hub.register_consumer(PushConsumer(), name="app.push")
    # The log consumer writes each event as one line of JSON.
    hub.register_consumer(LogConsumer(folder / "events.log"), name="app.log")

    app.register_blueprint(stream_blueprint(notifications))

    @app.get("/")
    def page() -> str:
        return PAGE.format(
            hub_id=hub.hub_id,
            stream_url=f"/notifications/{hub.hub_id}/stream",
            send_url="/send-examples",
        )

    @app.post("/send-examples")
    def send() -> Response:
        results = send_examples(notifications)
        return jsonify(
            [
                {
                    "title": r.event.title,
                    "hubs": r.hubs,
                    "consumers": {o.consumer: str(o.status) for o in r.outcomes},
                }
                for r in results
            ]
        )

    return app, notifications


def send_examples(notifications: Notifications) -> list[SendResult]:
    """Step 5: send one event that passes the hub's filter, and one that does not."""
    passes = Event(
        None,
        "test",
        "This event will pass the filter",
        "This is the body of the test",
        sender="system",
    )
    fails = Event(
        None,
        "system",
        "This event will not pass the filter",
        "This is the body of the test",
        sender="system",
    )
    # send() takes the Event itself, its dict or, as in the original guide, its JSON.
    return [notifications.send(passes.to_json()), notifications.send(fails.to_json())]


def main() -> None:
    port = int(os.environ.get("PORT", "5000"))
    app, notifications = create_app()
    print(f"\n  Flask-Notifications walkthrough: open http://127.0.0.1:{port}/ (Ctrl-C to stop)")
    print(f"  press the button, or: curl -X POST http://127.0.0.1:{port}/send-examples\n")
    try:
        app.run(host="127.0.0.1", port=port, threaded=True)
    finally:
        notifications.close()
