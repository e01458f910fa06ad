"""Helpers for script-run tests: a project folder with scripts, and a workspace."""

from __future__ import annotations

import os
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from runyard import Experiment, Workspace


class Project:
    def __init__(self, root: Path, ws: Workspace) -> None:
        self.root = root
        self.ws = ws
        self.exp = Experiment(ws, "scripts")

    def script(self, name: str, code: str) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
        return name

    def read(self, run, name: str) -> str:
        """A file of the run as text (empty if it is not there yet), wherever it is kept."""
        path = self.ws._artifacts.local_path(run.id, name)
        if path is not None:
            exists = os.path.exists(path)
            return Path(path).read_bytes().decode("utf-8", "replace") if exists else ""
        from runyard.errors import NotFound

        try:
            with self.ws._artifacts.open(run.id, name) as fh:
                return fh.read().decode("utf-8", "replace")
        except NotFound:
            return ""

    def log_text(self, run) -> str:
        return self.read(run, "user_logs/std_log.txt")

    def supervisor_statuses(self, run) -> list[str]:
        lines = self.read(run, "system_logs/supervisor.txt").splitlines()
        return [ln.split(" status ", 1)[1] for ln in lines if " status " in ln]


def wait_until(predicate, timeout: float = 30.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def supervisor_of(run_id: str) -> psutil.Process:
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "runyard.execution.supervisor" in cmdline and run_id in cmdline:
            return proc
    raise AssertionError(f"no supervisor process for {run_id}")


def new_project(
    tmp_path, monkeypatch, slots: int = 2, own_temp: bool = False, served: bool = False
) -> Iterator[Project]:
    """A project folder and workspace; ``own_temp`` gives the test its own temporary folder
    (for tests that look at what runyard leaves there); ``served``: the workspace is kept by
    a real runyard server (tokens on) and the project reaches it over HTTP."""
    if own_temp:
        temp = tmp_path / "tmp"
        temp.mkdir()
        monkeypatch.setenv("TMPDIR", str(temp))
        monkeypatch.setattr(tempfile, "tempdir", str(temp))
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNYARD_MAX_CONCURRENT_RUNS", str(slots))
    if not served:
        yield Project(root, Workspace(tmp_path / "ws"))
        return
    from tests.live_server import serve_workspace

    with serve_workspace(str(tmp_path / "ws"), auth=True) as (url, server_store):
        _, secret = server_store.create_token("tester", "contributor")
        monkeypatch.setenv("RUNYARD_TOKEN", secret)
        monkeypatch.setenv("RUNYARD_SPOOL_DIR", str(tmp_path / "spool"))
        yield Project(root, Workspace(url))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Iterator[Project]:
    yield from new_project(tmp_path, monkeypatch)
