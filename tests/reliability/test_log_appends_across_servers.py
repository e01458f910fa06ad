"""Two servers of one workspace append to one growing log in a bucket at the same time.

A client retries an append that took too long (a load balancer's 504, a timeout); the
retry reaches another server while the first is still writing, and carries the bytes
written since. A log in a bucket is rewritten whole by each append, so without a lock
that both servers respect the first server's write could land last and drop the
retry's extra bytes, which the client had been told were stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.conftest import pg_schema_uri
from tests.live_server import serve_workspace
from tests.s3_server import s3_root, s3_server  # noqa: F401 - fixtures

from runyard.records import NewRun

LOG = "user_logs/std_log.txt"


@pytest.fixture(params=["postgresql", "sqlite"])
def two_servers(request, s3_root, tmp_path) -> Iterator[tuple[str, str]]:  # noqa: F811
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            uri = stack.enter_context(contextlib.contextmanager(pg_schema_uri)())
        else:
            uri = str(tmp_path / "ws")
        one, store = stack.enter_context(serve_workspace(uri, s3_root))
        two, _ = stack.enter_context(serve_workspace(uri, s3_root))
        experiment = store.get_or_create_experiment("logs")
        run = store.create_runs(experiment.id, [NewRun("logged", status="Running")])[0]
        yield f"{one}/api/v1/runs/{run.id}/logs/{LOG}", f"{two}/api/v1/runs/{run.id}/logs/{LOG}"


def test_a_retried_append_racing_its_first_try_on_another_server_keeps_every_byte(two_servers):
    first, second = two_servers
    expected = b""
    with httpx.Client(timeout=60) as http, ThreadPoolExecutor(2) as pool:
        for i in range(40):
            piece = f"line {i} of the first try\n".encode() * 20
            extra = f"line {i} written meanwhile\n".encode() * 20
            offset = len(expected)
            sent = [
                pool.submit(http.post, first, params={"offset": offset}, content=piece),
                pool.submit(http.post, second, params={"offset": offset}, content=piece + extra),
            ]
            answers = [s.result() for s in sent]
            assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
            expected += piece + extra
            stored = http.post(first, params={"offset": -1}).json()["size"]
            assert stored == len(expected), f"round {i}: the log lost bytes"
        final = http.post(second, params={"offset": -1, "final": "true"})
        assert final.json()["size"] == len(expected)
        files = first.replace(f"/logs/{LOG}", f"/files/{LOG}")
        assert http.get(files).content == expected
