"""The store of every database, used directly and through a real server."""

from __future__ import annotations

import pytest

from runyard.store import open_store


@pytest.fixture(params=["direct", "server"])
def store(request, ws_uri, tmp_path):
    """The store of each database, used directly and through a real server (RestStore)."""
    uri, artifacts = ws_uri
    if request.param == "direct":
        s = open_store(uri)
        yield s
        s.close()
        return
    from tests.live_server import serve_workspace

    from runyard.store.rest import RestStore

    with serve_workspace(uri, artifacts or str(tmp_path / "artifacts")) as (url, _):
        s = RestStore(url, token="")
        yield s
        s.close()
