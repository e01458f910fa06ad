"""Fixtures of the server tests: a real runyard server in a thread, on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.live_server import serve_workspace


class ServerURL(str):
    """A running server's base URL; ``.store`` is the server's own Store."""

    store: Any


@pytest.fixture
def live_server() -> Iterator[Callable[..., ServerURL]]:
    """Start servers: ``live_server(store_uri_or_path, auth=False, artifacts=None,
    **settings)`` serves that workspace (its artifacts where the workspace keeps them, or
    in ``artifacts``) and returns the base URL; every server stops after the test.

        >>> url = live_server(str(tmp_path / "ws"), max_artifact_bytes=1000)  # doctest: +SKIP
    """
    with contextlib.ExitStack() as stack:

        def start(
            uri: str, auth: bool = False, artifacts: str | None = None, **settings: Any
        ) -> ServerURL:
            url, store = stack.enter_context(serve_workspace(uri, artifacts, auth=auth, **settings))
            served = ServerURL(url)
            served.store = store
            return served

        yield start
