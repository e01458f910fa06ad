"""Files in an S3 bucket through ``runyard serve``: a 1 GB artifact up and down.

moto's S3 server runs on 127.0.0.1 (a subprocess, objects kept in its memory); a
``runyard serve --artifacts s3://...`` subprocess keeps its files there; this process is a
client with a token and no S3 settings. Run by benchmarks/run.py; also on its own:

    .venv/bin/python benchmarks/s3.py [--quick]     # --quick: 256 MB

Figures: upload and download throughput (MB/s, the client's whole call: its own staging
copy, the request, the server's multipart upload and the copy to the final key inside
S3), and the resident memory of the server process, sampled every 0.1 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from tabulate import tabulate

QUICK = "--quick" in sys.argv or os.environ.get("RUNYARD_BENCH_QUICK") == "1"
SIZE_MB = 256 if QUICK else 1024

TARGETS = {
    "s3_artifact_mb": "",
    "s3_upload_mb_per_s": "reported",
    "s3_download_mb_per_s": "reported",
    "s3_server_rss_start_mb": "",
    "s3_server_rss_peak_mb": "bounded (not the file's size)",
    "s3_server_rss_end_mb": "",
}


def available() -> str | None:
    """Why the S3 figures cannot be taken here, or None."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed: pip install '.[s3,s3-server]'"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto's S3 server did not start") from None
            time.sleep(0.1)


def _write_file(path: str, size_mb: int) -> str:
    """A file of random-looking bytes (``size_mb`` MB); its SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for i in range(size_mb):
            piece = block[i % 251 :] + block[: i % 251]  # every MB different
            digest.update(piece)
            fh.write(piece)
    return digest.hexdigest()


def measure(folder: str) -> dict[str, Any]:
    import boto3

    from runyard import Experiment, Workspace
    from runyard.store import open_workspace
    from server import Server

    moto, endpoint = _start_moto()
    aws = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {name: os.environ.get(name) for name in [*aws, "RUNYARD_TOKEN"]}
    server = None
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=bucket)
        root = f"s3://{bucket}/runyard"
        workspace = os.path.join(folder, f"s3-ws-{uuid.uuid4().hex[:6]}")
        os.environ.update(aws)  # the server's settings (it inherits them), not the client's
        opened = open_workspace(workspace, root)
        try:
            _record, secret = opened.store.create_token("bench-s3", "contributor")
        finally:
            opened.store.close()
        server = Server(workspace, root, folder, workers=1)
        url = server.start()
        for name in aws:
            os.environ.pop(name)  # the client knows nothing of S3
        os.environ["RUNYARD_TOKEN"] = secret
        source = os.path.join(folder, "s3-big.bin")
        expected = _write_file(source, SIZE_MB)
        run = Experiment(Workspace(url), "bench-s3").start_logging(snapshot_directory=None)
        start = time.perf_counter()
        record = run.upload_file("outputs/big.bin", source)
        up = time.perf_counter() - start
        os.unlink(source)
        target = os.path.join(folder, "s3-big-back.bin")
        start = time.perf_counter()
        run.download_file("outputs/big.bin", target)
        down = time.perf_counter() - start
        with open(target, "rb") as fh:
            back = hashlib.file_digest(fh, "sha256").hexdigest()
        os.unlink(target)
        if record.digest != expected or back != expected:
            raise RuntimeError("the artifact came back different")
        run.complete()
        return {
            "s3_artifact_mb": SIZE_MB,
            "s3_upload_mb_per_s": round(SIZE_MB / up, 1),
            "s3_download_mb_per_s": round(SIZE_MB / down, 1),
            "s3_server_rss_start_mb": round(server.rss_start / 2**20),
            "s3_server_rss_peak_mb": round(server.rss_peak / 2**20),
            "s3_server_rss_end_mb": round(server.rss() / 2**20),
        }
    finally:
        if server is not None:
            server.stop()
        moto.terminate()
        moto.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def rows(results: dict[str, Any]) -> list[list[str]]:
    return [[name, f"{results[name]:,}", target] for name, target in TARGETS.items()]


def main() -> None:
    why = available()
    if why:
        sys.exit(f"S3 figures skipped: {why}")
    with tempfile.TemporaryDirectory() as folder:
        results = measure(folder)
    print("a file through runyard serve into moto's S3 server on 127.0.0.1:")
    print(tabulate(rows(results), headers=["figure", "value", "target"], disable_numparse=True))
    print(json.dumps({"s3": results}))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
