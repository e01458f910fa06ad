"""Fixtures: real SQLite workspaces in tmp dirs, and real PostgreSQL schemas.

PostgreSQL tests use ``RUNYARD_TEST_POSTGRES`` (default: the local server). When it
cannot be reached they skip with a visible reason, unless ``RUNYARD_REQUIRE_POSTGRES=1``
(set by ``.ci/run``), which turns that into a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest

from runyard import Workspace
from tests.s3_server import s3_root, s3_server  # noqa: F401 - fixtures: a real S3 server

pytest_plugins = ["tests.ray_fixtures"]  # a real Ray cluster, started once per session

PG_URI = os.environ.get("RUNYARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("RUNYARD_REQUIRE_POSTGRES") == "1"
_pg_error: str | None = None


def _pg_available() -> str | None:
    global _pg_error
    if _pg_error is not None:
        return _pg_error or None
    try:
        import psycopg

        with psycopg.connect(PG_URI, connect_timeout=3):
            pass
        _pg_error = ""
    except Exception as exc:
        _pg_error = f"PostgreSQL not reachable at {PG_URI}: {exc}"
    return _pg_error or None


def pg_schema_uri() -> Iterator[str]:
    """A fresh schema on the test server; yields a URI whose search_path is that schema."""
    problem = _pg_available()
    if problem:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here (RUNYARD_REQUIRE_POSTGRES=1): {problem}")
        pytest.skip(problem)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URI, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URI else "?"
    try:
        yield f"{PG_URI}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URI, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_uri() -> Iterator[str]:
    yield from pg_schema_uri()


@pytest.fixture(params=["sqlite", "postgresql"])
def ws_uri(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[str, str | None]]:
    """(workspace URI, artifacts dir) on each database."""
    if request.param == "sqlite":
        yield str(tmp_path / "ws"), None
    else:
        for uri in pg_schema_uri():
            yield uri, str(tmp_path / "artifacts")


@pytest.fixture(params=["sqlite", "postgresql", "server"])
def ws(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> Iterator[Workspace]:
    """A workspace on each database, and one kept by a real runyard server (over SQLite,
    with tokens on), with the working directory in a fresh folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if request.param == "server":
        yield from _served_workspace(str(tmp_path / "served"), monkeypatch)
        return
    uris = [str(tmp_path / "ws")] if request.param == "sqlite" else pg_schema_uri()
    artifacts = None if request.param == "sqlite" else str(tmp_path / "artifacts")
    for uri in uris:
        workspace = Workspace(uri, artifacts=artifacts)
        yield workspace
        workspace._store.close()


def _served_workspace(uri: str, monkeypatch) -> Iterator[Workspace]:
    from tests.live_server import serve_workspace

    with serve_workspace(uri, auth=True) as (url, server_store):
        _, secret = server_store.create_token("tester", "admin")
        monkeypatch.setenv("RUNYARD_TOKEN", secret)
        monkeypatch.setenv("RUNYARD_SPOOL_DIR", os.path.join(os.path.dirname(uri), "spool"))
        workspace = Workspace(url)
        yield workspace
        workspace._store.close()


@pytest.fixture
def local_ws(tmp_path, monkeypatch) -> Iterator[Workspace]:
    """A SQLite workspace only, for SDK behaviour that does not depend on the database."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    workspace = Workspace(str(tmp_path / "ws"))
    yield workspace
    workspace._store.close()


@pytest.fixture(autouse=True)
def _forget_open_runs() -> Iterator[None]:
    """Runs a test leaves open are its own business; don't finish them at interpreter exit."""
    yield
    from runyard import _process

    _process._active.clear()


def needs_local(ws: Workspace) -> None:
    """Skip for a server's workspace: the test reaches into the database or artifact folder
    itself (tests/server covers the same behaviour through the server)."""
    if "://" in ws.artifacts_root:
        pytest.skip("reaches into the workspace's database or files, which a client cannot")


# -- the browser of the studio's tests --------------------------------------------------
# Without Chromium or Playwright the browser tests skip with a visible reason, unless
# RUNYARD_REQUIRE_BROWSER=1 (CI sets it) makes that a failure. One Playwright serves the
# whole session: its sync API cannot be started twice in one thread.
REQUIRE = os.environ.get("RUNYARD_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("RUNYARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# as the machine's notes say: without these, Chromium keeps trying to reach the internet
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _missing(why: str) -> None:
    if REQUIRE:
        pytest.fail(f"the browser tests are required here (RUNYARD_REQUIRE_BROWSER=1): {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        _missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
