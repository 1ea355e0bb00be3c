"""A tiny Kinto-like records API whose record events go to the listeners of ``notifycore.ini``.

``POST /buckets/<bucket>/collections/<collection>/records`` creates a record
and ``PATCH .../records/<id>`` updates it; each sends an event with Kinto's
``action`` and ``resource`` fields, which the listeners' ``actions`` and
``resources`` keys filter on. Users are the Basic-auth user name, as in
Kinto's ``--auth`` examples.

Run it with ``python -m examples.kinto_email_listener`` (``KINTO_EXAMPLE_CONFIG``
names another configuration file, ``PORT`` another port).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from flask import Flask, abort, jsonify, request
from werkzeug.wrappers import Response

from notifycore import Event, Notifications

CONFIG = Path(__file__).resolve().parent / "notifycore.ini"


def create_app(config: str | os.PathLike[str] | None = None) -> tuple[Flask, Notifications]:
    app = Flask(__name__)
    # The listeners are declared in the file; nothing here knows about e-mail.
    notifications = Notifications(
        app, config=config or os.environ.get("KINTO_EXAMPLE_CONFIG", CONFIG)
    )
    records: dict[tuple[str, str, str], dict[str, Any]] = {}
    ids = itertools.count(1)

    def user_id() -> str:
        auth = request.authorization
        return f"account:{auth.username}" if auth and auth.username else "system.Everyone"

    def notify(action: str, bucket: str, collection: str, record_id: str) -> None:
        uri = f"/buckets/{bucket}/collections/{collection}/records/{record_id}"
        notifications.send(
            Event(
                None,
                f"record.{action}",
                f"record {action}d",
                sender=user_id(),
                action=action,
                resource="record",
                bucket_id=bucket,
                collection_id=collection,
                record_id=record_id,
                uri=uri,
            )
        )

    @app.post("/buckets/<bucket>/collections/<collection>/records")
    def create(bucket: str, collection: str) -> tuple[Response, int]:
        data = (request.get_json(silent=True) or {}).get("data", {})
        record = {**data, "id": str(next(ids))}
        records[(bucket, collection, record["id"])] = record
        notify("create", bucket, collection, record["id"])  # the listener runs here, inline
        return jsonify({"data": record}), 201

    @app.patch("/buckets/<bucket>/collections/<collection>/records/<record_id>")
    def update(bucket: str, collection: str, record_id: str) -> Response:
        record = records.get((bucket, collection, record_id))
        if record is None:
            abort(404)
        record.update((request.get_json(silent=True) or {}).get("data", {}))
        notify("update", bucket, collection, record_id)
        return jsonify({"data": record})

    return app, notifications


def main() -> None:
    port = int(os.environ.get("PORT", "8888"))
    app, notifications = create_app()
    print(f"\n  records API on http://127.0.0.1:{port}/ (Ctrl-C to stop); create a record with")
    print(
        '  curl -u alice:secret -H \'Content-Type: application/json\' -d \'{"data": {"note": "kinto"}}\''
        f" http://127.0.0.1:{port}/buckets/default/collections/notes/records\n"
    )
    try:
        app.run(host="127.0.0.1", port=port, threaded=True)
    finally:
        notifications.close()
