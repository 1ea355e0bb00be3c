"""Test helpers for apps using notify-starlette: a real uvicorn server on 127.0.0.1.

Needs uvicorn and a WebSocket implementation (``pip install
"notify-starlette[test]"``). Starlette's own TestClient cannot stream an
endless response; a real server can, and it runs the lifespan.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from notifycore.testing import free_port, wait_for

__all__ = ["serve"]

#: The bound of the helper's waits: the server's start and its stop.
WAIT = 30.0


@contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn in a thread; yields its ``http://127.0.0.1:<port>`` base URL.

    ``options`` go to ``uvicorn.Config``. On exit the server is told to stop
    and joined.
    """
    port = free_port()
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "log_level": "warning",
        "ws": "websockets-sansio",
        "timeout_graceful_shutdown": WAIT,
        **options,
    }
    server = uvicorn.Server(uvicorn.Config(app, **settings))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), WAIT, "uvicorn to start")
        if not server.started:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(WAIT)
