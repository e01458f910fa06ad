"""A real runyard server in a thread of the test process, on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from runyard.server.app import ServerSettings, create_app
from runyard.store import open_workspace


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) in a thread; yield its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def serve_workspace(
    uri: str, artifacts: str | None = None, **settings: Any
) -> Iterator[tuple[str, Any]]:
    """Serve the workspace ``uri``; yield (server URL, the server's own Store)."""
    opened = open_workspace(uri, artifacts)
    settings.setdefault("auth", False)
    app = create_app(opened.store, opened.artifacts, ServerSettings(**settings))
    try:
        with serve_app(app) as url:
            yield url, opened.store
    finally:
        opened.store.close()
