"""Attacks on a server whose files are in a bucket (moto's S3 server on 127.0.0.1):
hostile names never make a key outside their run's prefix, and an upload killed midway —
its client or the server itself SIGKILLed — leaves no object under a final key (only an
incomplete multipart upload, which the next start aborts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from urllib.parse import quote

import httpx
import pytest
from tests.s3_server import start_serve, without_aws

from runyard import Experiment, Workspace

pytestmark = pytest.mark.slow


def _listing(s3_server, s3_root: str) -> tuple[list[str], list[str]]:
    """(keys, keys of incomplete multipart uploads) below the root's prefix."""
    bucket, _, prefix = s3_root.removeprefix("s3://").partition("/")
    client = s3_server.client()
    keys = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    return sorted(k["Key"] for k in keys), sorted(u["Key"] for u in uploads)


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def _slow_uploader(url: str, token: str, run_id: str, name: str) -> subprocess.Popen[bytes]:
    """A client sending 64 MB, a MB every 20 ms, as one streamed PUT."""
    code = textwrap.dedent(
        f"""
        import time, httpx
        def body():
            for _ in range(64):
                yield b"x" * (1 << 20)
                time.sleep(0.02)
        httpx.put({url!r} + "/api/v1/runs/{run_id}/files/{name}", content=body(),
                  headers={{"Authorization": "Bearer {token}"}}, timeout=120)
        """
    )
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture
def served(pg_uri, s3_root, monkeypatch):
    server = start_serve(pg_uri, s3_root, env={"RUNYARD_S3_PART_MB": "5"})
    without_aws(monkeypatch)  # the test's own reads of the bucket go through s3_server.client()
    monkeypatch.setenv("RUNYARD_TOKEN", server.token)
    try:
        yield server
    finally:
        server.stop()


def test_hostile_paths_through_the_server_make_no_key(served, s3_server, s3_root):
    run = Experiment(Workspace(served.url), "attacks").start_logging(snapshot_directory=None)
    auth = {"Authorization": f"Bearer {served.token}"}
    hostile = [
        "..%2F..%2Fescape",
        "%2e%2e/%2e%2e/escape",
        "a/%2e%2e/%2e%2e/%2e%2e/escape",
        "%2Fabsolute",
        "a%00b",
        "%ED%B3%BF",  # a lone surrogate, UTF-8 encoded
        "a%5Cb",
        "x" * 10_000,
        "%2e",
    ]
    for path in hostile:
        for method in ("PUT", "GET"):
            answer = httpx.request(
                method,
                f"{served.url}/api/v1/runs/{run.id}/files/{path}",
                content=b"evil" if method == "PUT" else None,
                headers=auth,
            )
            assert answer.status_code in (400, 404, 405), (path, answer.status_code)
        answer = httpx.post(
            f"{served.url}/api/v1/runs/{run.id}/logs/{path}", params={"offset": 0}, headers=auth
        )
        assert answer.status_code in (400, 404, 405), (path, answer.status_code)
    for run_id in ("..", "%2e%2e", "a%2Fb"):
        answer = httpx.put(
            f"{served.url}/api/v1/runs/{run_id}/files/x.txt", content=b"evil", headers=auth
        )
        assert answer.status_code in (400, 404), (run_id, answer.status_code)
    keys, uploads = _listing(s3_server, s3_root)
    prefix = s3_root.removeprefix("s3://").partition("/")[2]
    assert uploads == []
    assert all(k.startswith(f"{prefix}/runs/{run.id}/") for k in keys if "/runs/" in k), keys
    assert not [k for k in keys if "escape" in k or "evil" in k]
    ok = httpx.put(
        f"{served.url}/api/v1/runs/{run.id}/files/{quote('dir/é ok.txt')}",
        content=b"fine",
        headers=auth,
    )
    assert ok.status_code == 200
    assert f"{prefix}/runs/{run.id}/dir/é ok.txt" in _listing(s3_server, s3_root)[0]


def test_a_client_killed_mid_upload_leaves_no_object(served, s3_server, s3_root):
    run = Experiment(Workspace(served.url), "killed").start_logging(snapshot_directory=None)
    client = _slow_uploader(served.url, served.token, run.id, "outputs/big.bin")
    try:
        _wait(lambda: _listing(s3_server, s3_root)[1] != [])  # a multipart upload under way
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    _wait(lambda: _listing(s3_server, s3_root) == ([], []))  # staging cleaned at once
    assert run.get_file_names() == []


def test_a_server_killed_mid_upload_leaves_only_staging_which_the_next_start_sweeps(
    pg_uri, served, s3_server, s3_root
):
    run = Experiment(Workspace(served.url), "killed").start_logging(snapshot_directory=None)
    client = _slow_uploader(served.url, served.token, run.id, "outputs/big.bin")
    try:
        _wait(lambda: any(k.endswith(".upload") for k in _listing(s3_server, s3_root)[0]))
        served.stop(kill=True)  # SIGKILL: nothing of the server runs after this
    finally:
        client.kill()
        client.wait()
    keys, uploads = _listing(s3_server, s3_root)
    assert uploads and all("/.staging/" in k for k in keys)  # no object under a final key
    assert [k for k in keys if k.endswith(".upload")]  # the marker naming the upload
    again = start_serve(pg_uri, s3_root, env=dict(s3_server.env()))
    try:
        assert _listing(s3_server, s3_root) == ([], [])  # the dead server's upload is gone
        assert Workspace(again.url).get_run(run.id).get_file_names() == []
    finally:
        again.stop()


def test_a_broken_source_mid_upload_leaves_nothing(s3_root, s3_server, monkeypatch):
    """The S3 side of an upload whose stream breaks off: the multipart upload is aborted
    and the staging key never appears."""
    monkeypatch.setenv("RUNYARD_S3_PART_MB", "5")
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    from runyard.artifacts.s3 import S3ArtifactStore

    store = S3ArtifactStore(s3_root)

    class Breaking:
        sent = 0

        def read(self, n: int = -1) -> bytes:
            self.sent += 1
            if self.sent > 14:
                raise ConnectionResetError("the client went away")
            return os.urandom(1 << 20)

    with pytest.raises(ConnectionResetError):
        store.stage(Breaking())  # type: ignore[arg-type]
    assert _listing(s3_server, s3_root) == ([], [])
