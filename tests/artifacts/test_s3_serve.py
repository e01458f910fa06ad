"""``runyard serve --artifacts s3://...`` as a real subprocess on a real port: clients
upload and download through it without any S3 settings of their own."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import httpx
import pytest

from runyard import Experiment, Workspace
from tests.s3_server import Served, start_serve, without_aws


@pytest.fixture
def served(pg_uri, s3_root, monkeypatch):
    server = start_serve(pg_uri, s3_root, env={"RUNYARD_S3_PART_MB": "5"})
    try:
        without_aws(monkeypatch)
        monkeypatch.setenv("RUNYARD_TOKEN", server.token)
        yield server
    finally:
        server.stop()


def _head(s3_server, s3_root: str, key: str) -> dict:
    bucket, _, prefix = s3_root.removeprefix("s3://").partition("/")
    return s3_server.client().head_object(Bucket=bucket, Key=f"{prefix}/{key}")


@pytest.mark.slow
def test_upload_and_download_through_the_server(served: Served, s3_server, s3_root, tmp_path):
    ws = Workspace(served.url)
    run = Experiment(ws, "through").start_logging(snapshot_directory=None)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))
    run.upload_file("outputs/big.bin", str(big))
    head = _head(s3_server, s3_root, f"runs/{run.id}/outputs/big.bin")
    assert head["ContentLength"] == 20 << 20
    assert head["ETag"].strip('"').endswith("-4")  # stored by a multipart upload of 4 parts
    got = tmp_path / "got.bin"
    run.download_file("outputs/big.bin", str(got))
    assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()
    answer = httpx.get(
        f"{served.url}/api/v1/runs/{run.id}/files/outputs/big.bin",
        headers={"Authorization": f"Bearer {served.token}", "Range": "bytes=1000-1999"},
    )
    assert answer.status_code == 206
    assert answer.headers["content-range"] == f"bytes 1000-1999/{20 << 20}"
    assert answer.content == big.read_bytes()[1000:2000]
    whole = f"{served.url}/api/v1/runs/{run.id}/files/outputs/big.bin"
    auth = {"Authorization": f"Bearer {served.token}"}
    assert httpx.get(whole, headers={**auth, "Range": f"bytes={30 << 20}-"}).status_code == 416
    run.complete()


def test_a_live_log_grows_in_the_bucket_and_readers_see_it(served: Served, s3_server, s3_root):
    ws = Workspace(served.url)
    sizes: list[int] = []
    done = threading.Event()

    def follow(run_id: str) -> None:
        while not done.is_set():
            try:
                with ws._artifacts.open(run_id, "logs/user_log.txt") as fh:
                    size = len(fh.read())
                if not sizes or sizes[-1] != size:
                    sizes.append(size)
            except Exception:
                pass
            time.sleep(0.2)

    with Experiment(ws, "logs").start_logging(snapshot_directory=None) as run:
        reader = threading.Thread(target=follow, args=(run.id,))
        reader.start()
        for i in range(8):
            print(f"line {i}", flush=True)
            time.sleep(0.4)
    done.set()
    reader.join()
    names = run.get_file_names()
    assert "logs/user_log.txt" in names, names
    with ws._artifacts.open(run.id, "logs/user_log.txt") as fh:
        text = fh.read()
    assert all(f"line {i}".encode() in text for i in range(8))
    head = _head(s3_server, s3_root, f"runs/{run.id}/logs/user_log.txt")
    assert head["ContentLength"] == len(text)
    record = ws._store.get_artifact(run.id, "logs/user_log.txt")
    assert (record.size, record.digest) == (len(text), hashlib.sha256(text).hexdigest())
    assert len([s for s in sizes if 0 < s < len(text)]) >= 2  # seen growing, not only at end


def test_serve_refuses_a_missing_bucket_and_missing_credentials(pg_uri, s3_root, monkeypatch):
    bucket = s3_root.removeprefix("s3://").split("/", 1)[0]
    with pytest.raises(AssertionError, match="did not start"):
        start_serve(pg_uri, f"s3://{bucket}-missing/x")
    import subprocess
    import sys

    runyard = os.path.join(os.path.dirname(sys.executable), "runyard")
    argv = [runyard, "serve", "--workspace", pg_uri, "--port", "0"]
    done = subprocess.run(
        [*argv, "--artifacts", f"s3://{bucket}-missing/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"bucket '{bucket}-missing' does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    done = subprocess.run(
        [*argv, "--artifacts", s3_root], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 1 and "no AWS credentials" in done.stderr
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    done = subprocess.run(
        [*argv, "--artifacts", s3_root], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 1 and "cannot reach the S3 endpoint" in done.stderr
