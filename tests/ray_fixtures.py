"""Fixtures for runs on Ray (a plugin of tests/conftest.py, so that one cluster serves
the whole session): a real Ray cluster (2 CPUs) and a team workspace it can reach,
PostgreSQL with an artifact folder or a real runyard server over it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runyard import Experiment, Workspace
from runyard.compute import ComputeTarget, RayCompute
from tests.conftest import pg_schema_uri
from tests.ray_cluster import _missing, ray_cluster

TARGET = "ray-test"


@pytest.fixture(scope="session")
def ray_url() -> Iterator[str]:
    try:
        import ray  # noqa: F401
    except ImportError:
        _missing("Ray is not installed: pip install 'runyard[ray]'")
    with ray_cluster(cpus=2) as url:
        yield url


class Cluster:
    """A project folder, a workspace, and the cluster attached to it as ``ray-test``."""

    def __init__(self, root: Path, ws: Workspace, url: str) -> None:
        self.root = root
        self.ws = ws
        self.url = url
        self.exp = Experiment(ws, "on-ray")
        if TARGET not in ws.compute_targets:
            ComputeTarget.attach(ws, TARGET, RayCompute.attach_configuration(url))

    def script(self, name: str, code: str) -> str:
        (self.root / name).write_text(textwrap.dedent(code))
        return name

    def read(self, run, name: str) -> str:
        from runyard.errors import NotFound

        try:
            with self.ws._artifacts.open(run.id, name) as fh:
                return fh.read().decode("utf-8", "replace")
        except NotFound:
            return ""


@pytest.fixture(params=["postgresql", "server"])
def cluster(request, ray_url, tmp_path, monkeypatch) -> Iterator[Cluster]:
    yield from _cluster(request.param, ray_url, tmp_path, monkeypatch)


@pytest.fixture
def served_cluster(ray_url, tmp_path, monkeypatch) -> Iterator[Cluster]:
    """The runyard-server workspace only."""
    yield from _cluster("server", ray_url, tmp_path, monkeypatch)


def _cluster(kind: str, ray_url: str, tmp_path, monkeypatch) -> Iterator[Cluster]:
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    for uri in pg_schema_uri():
        artifacts = str(tmp_path / "artifacts")
        if kind == "postgresql":
            ws = Workspace(uri, artifacts=artifacts)
            yield Cluster(root, ws, ray_url)
            ws._store.close()
            continue
        from tests.live_server import serve_workspace

        with serve_workspace(uri, artifacts, auth=True) as (url, server_store):
            _, secret = server_store.create_token("tester", "admin")
            monkeypatch.setenv("RUNYARD_TOKEN", secret)
            monkeypatch.setenv("RUNYARD_SPOOL_DIR", str(tmp_path / "spool"))
            ws = Workspace(url)
            yield Cluster(root, ws, ray_url)
            ws._store.close()


@pytest.fixture
def pg_cluster(ray_url, tmp_path, monkeypatch) -> Iterator[Cluster]:
    """The PostgreSQL workspace only (tests that look at processes or the database)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    for uri in pg_schema_uri():
        ws = Workspace(uri, artifacts=str(tmp_path / "artifacts"))
        yield Cluster(root, ws, ray_url)
        ws._store.close()


def needs_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        _missing("PyTorch is not installed (pip install torch==2.13.0, the CPU build)")
