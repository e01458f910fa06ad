"""``runyard serve``'s own choices: --no-auth only on loopback, with a warning each start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from runyard.server.serving import is_loopback

RUNYARD = os.path.join(os.path.dirname(sys.executable), "runyard")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.com", "::"])
def test_no_auth_is_refused_off_loopback(tmp_path, host):
    done = subprocess.run(
        [RUNYARD, "serve", "--workspace", str(tmp_path / "ws"), "--host", host, "--no-auth"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"--no-auth is refused on {host}" in done.stderr
    assert not (tmp_path / "ws").exists()  # refused before anything was made


def test_loopback_addresses():
    assert all(map(is_loopback, ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.com", ""]))


def test_no_auth_warns_on_every_start_and_answers_without_a_token(tmp_path):
    for _ in range(2):
        port = _free_port()
        proc = subprocess.Popen(
            [RUNYARD, "serve", "--workspace", str(tmp_path / "ws"), "--port", str(port),
             "--no-auth"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    answer = httpx.get(f"{url}/api/v1/experiments")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.1)
            assert answer.status_code == 200 and answer.json() == []
        finally:
            proc.terminate()
            output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "warning: --no-auth" in output


def test_a_server_is_not_served_again(tmp_path):
    done = subprocess.run(
        [RUNYARD, "serve", "--workspace", "http://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "not another server" in done.stderr
