"""``runyard studio``: a local workspace's studio on 127.0.0.1, signed in by a one-time
link, found by ``get_portal_url()`` while it runs; a real process, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx

from runyard import Experiment, Workspace
from runyard.workspace import DEFAULT_STUDIO_URL, STUDIO_FILE

RUNYARD = os.path.join(os.path.dirname(sys.executable), "runyard")


def _start(ws: Workspace, *args: str) -> tuple[subprocess.Popen[str], str, str]:
    """Start runyard studio; (the process, its sign-in link, what it printed before)."""
    proc = subprocess.Popen(
        [RUNYARD, "studio", "--workspace", ws.uri, "--no-browser", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    link, seen = "", ""
    while not link:
        line = proc.stdout.readline()
        seen += line
        assert line or proc.poll() is None, "runyard studio ended before printing its link"
        if "/login?code=" in line:
            link = line.strip()
        assert time.monotonic() < deadline
    base = link.split("/login", 1)[0]
    while True:
        try:
            httpx.get(f"{base}/api/health")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
    return proc, link, seen


def test_the_link_signs_in_once_and_the_studio_is_found_while_it_runs(tmp_path):
    ws = Workspace(str(tmp_path / "ws"))
    run = Experiment(ws, "local").start_logging(snapshot_directory=None)
    proc, link, _ = _start(ws, "--port", "0")
    base = link.split("/login", 1)[0]
    try:
        assert base.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base}/api/v1/experiments").status_code == 401
        browser = httpx.Client(follow_redirects=True)
        signed = browser.get(link)  # follows the redirect to / with the cookie set
        assert signed.status_code == 200 and "<script" in signed.text
        who = browser.get(f"{base}/api/v1/whoami").json()
        assert who == {"name": "studio", "role": "admin", "scope_run_id": None}
        assert browser.get(f"{base}/api/v1/runs/{run.id}").json()["id"] == run.id
        again = httpx.get(link, follow_redirects=True)
        assert str(again.url).endswith("/login?link=used")  # spent
        marker = os.path.join(ws._local_folder, STUDIO_FILE)
        with open(marker) as fh:
            assert json.load(fh)["url"] == base
        assert run.get_portal_url() == f"{base}/runs/{run.id}"
        assert ws._store.count_tokens() == 0  # the studio made no token in the workspace
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert not os.path.exists(os.path.join(ws._local_folder, STUDIO_FILE))
    assert run.get_portal_url() == f"{DEFAULT_STUDIO_URL}/runs/{run.id}"


def test_a_taken_port_is_not_a_failure(tmp_path):
    ws = Workspace(str(tmp_path / "ws"))
    first, link, _ = _start(ws, "--port", "0")
    port = link.split(":")[2].split("/")[0]
    try:
        second, other, seen = _start(ws, "--port", port)
        try:
            assert other.split(":")[2].split("/")[0] != port
            assert f"port {port} is taken; the studio uses a free one" in seen
        finally:
            second.send_signal(signal.SIGINT)
            second.communicate(timeout=30)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def test_a_server_workspace_opens_the_server(tmp_path):
    done = subprocess.run(
        [RUNYARD, "studio", "--workspace", "http://127.0.0.1:9/", "--no-browser"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "its server's: http://127.0.0.1:9/" in done.stdout
