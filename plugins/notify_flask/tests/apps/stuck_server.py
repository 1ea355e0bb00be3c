"""The blueprint on SQLite, for the clients-that-never-read test.

``python stuck_server.py PORT`` serves it with werkzeug's threaded server; gunicorn serves
``stuck_server:app``. ``STUCK_DB`` is the SQLite URL the test publishes to and
``SEND_TIMEOUT`` the blueprint's. ``GET /debug`` tells which streams still have a subscriber.
"""

import os
import sys
import threading

from flask import Flask, Response, jsonify
from werkzeug.serving import make_server

from notify_flask import stream_blueprint
from notifycore import Notifications, PushConsumer

app = Flask("stuck")
app.config.update(BACKEND="sqlite", BACKEND_URL=os.environ["STUCK_DB"])
notifications = Notifications(app, environ={})
notifications.create_hub("alerts").register_consumer(PushConsumer())
app.register_blueprint(
    stream_blueprint(heartbeat=0.2, send_timeout=float(os.environ["SEND_TIMEOUT"]))
)


@app.get("/debug")
def debug() -> Response:
    return jsonify(streams=notifications.fanout.streams, threads=threading.active_count())


if __name__ == "__main__":
    make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
