"""The web protocol every web adapter binds: routes, replies, access, SSE frames.

- :mod:`notifycore.web.protocol`: each route's logic, replies and error codes,
  the per-process frame cache (:class:`WebProtocol`, :class:`EventStream`);
- :mod:`notifycore.web.access`: who may read which stream and who may send,
  resume ids, the cross-site check (:class:`Access`);
- :mod:`notifycore.web.sse`: Server-Sent Events framing;
- :mod:`notifycore.web.calls`: the steps both a sync and an async adapter run.

``notify_flask`` and ``notify_starlette`` only translate requests and
responses; see docs/web.md.
"""

from notifycore.web.access import (
    SEND_PERMISSION,
    Access,
    bearer_token,
    client_stream_id,
    cross_site_refusal,
    is_json,
    principal_id,
    resume_id,
    stream_for_hub,
)
from notifycore.web.protocol import (
    EventStream,
    Refusal,
    Reply,
    WebOptions,
    WebProtocol,
    WebRequest,
    error_reply,
    process_state,
)

__all__ = [
    "SEND_PERMISSION",
    "Access",
    "EventStream",
    "Refusal",
    "Reply",
    "WebOptions",
    "WebProtocol",
    "WebRequest",
    "bearer_token",
    "client_stream_id",
    "cross_site_refusal",
    "error_reply",
    "is_json",
    "principal_id",
    "process_state",
    "resume_id",
    "stream_for_hub",
]
