"""The Flask adapter under gevent: monkey-patched, served by gevent's WSGI server on 127.0.0.1."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from flask import Flask  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from notify_flask import stream_blueprint  # noqa: E402
from notifycore import Notifications, PushConsumer  # noqa: E402

app = Flask("gevent-demo")
app.config["BACKEND"] = "memory"
notifications = Notifications(app, environ={})
notifications.create_hub("Chat").register_consumer(PushConsumer())
app.register_blueprint(stream_blueprint(heartbeat=0.5))

server = WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None)
print("ready", flush=True)
server.serve_forever()
