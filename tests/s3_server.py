"""A real S3-protocol server for the tests: moto in server mode, a subprocess on a free
127.0.0.1 port, spoken to over HTTP by boto3.

Without moto's server (``pip install '.[s3-server]'``) the S3 tests skip with a visible
reason, unless ``RUNYARD_REQUIRE_S3=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REQUIRE = os.environ.get("RUNYARD_REQUIRE_S3") == "1"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """The AWS settings a process needs to use this server (nothing runyard-specific)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            **KEYS,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **_keys())

    def new_bucket(self) -> str:
        name = f"runyard-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"the S3 tests are required here (RUNYARD_REQUIRE_S3=1): {why}")
    pytest.skip(f"S3 tests skipped: {why}; pip install '.[s3,s3-server]'")


def start_moto(extra_env: dict[str, str] | None = None) -> S3Server:
    """Start ``moto_server`` on a free port and wait until it answers."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as exc:
        _unavailable(f"{exc.name} is not installed")
    port = free_port()
    env = {**os.environ, **(extra_env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _unavailable(f"moto's S3 server did not start on port {port}")
            time.sleep(0.1)
    return S3Server(endpoint, process)


def stop(server: S3Server) -> None:
    _end(server.process, 10)


def _end(process: subprocess.Popen, wait: float) -> None:
    """SIGTERM ``process``, SIGKILL it if it is not gone after ``wait`` seconds."""
    process.terminate()
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_moto()
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def s3_root(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket's ``s3://`` root; this process's AWS settings point at the server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return f"s3://{s3_server.new_bucket()}/team/runyard"


@dataclass
class Served:
    """A ``runyard serve`` subprocess whose files are in a bucket."""

    url: str
    token: str
    process: subprocess.Popen[str]

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
            self.process.wait()
        else:
            _end(self.process, 30)


def start_serve(workspace: str, artifacts: str, env: dict[str, str] | None = None) -> Served:
    """Start ``runyard serve --workspace W --artifacts s3://...`` on a free port; wait for
    it to answer; its admin token is read from what it prints on a first start."""
    import httpx

    runyard = os.path.join(os.path.dirname(sys.executable), "runyard")
    port = free_port()
    process = subprocess.Popen(
        [runyard, "serve", "--workspace", workspace, "--artifacts", artifacts, "--port", f"{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    token = ""
    for line in process.stdout:
        if line.strip().startswith("ry_"):
            token = line.strip()
        if "runyard serves" in line:
            break
    else:
        process.wait(10)
        raise AssertionError(f"runyard serve did not start (exit {process.returncode})")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/api/health")
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("runyard serve did not answer") from None
            time.sleep(0.1)
    return Served(url, token, process)


def without_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process (a client of the server) knows nothing of S3 from here on."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
