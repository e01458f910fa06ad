"""A hostile user against the studio and the notebook widget: each test is a defect that
got through once. Real servers on a port, a real Chromium (Debian's), real databases.

- text a contributor chose (class labels, display names) drawn by plotly as markup: links
  to another site planted in a reader's charts;
- a run whose supervisor went silent shown Running for ever, except on the Logs tab;
- a status history whose times go backwards when two writers meet;
- run filters that cannot read a word of a non-Latin script, and tag chips whose filter
  cannot be read;
- ``RunDetails`` that breaks on a metric with a text value and on an unusual error.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.live_server import serve_workspace
from tests.studio.conftest import wait_js

from runyard import Experiment, Workspace
from runyard.records import NewRun
from runyard.store import open_workspace

LINK = '<a href="https://evil.example/">click</a>'


@pytest.fixture
def studio_of(browser, tmp_path) -> Iterator[Any]:
    """``studio_of(ws)``: serve ``ws`` (auth on) and return a signed-in page and the URL."""
    opened: list[Any] = []
    with_servers: list[Any] = []

    def start(ws: Workspace) -> tuple[Any, str]:
        server = serve_workspace(ws.uri, None, auth=True)
        url, store = server.__enter__()
        with_servers.append(server)
        _, token = store.create_token(f"hostile-{len(with_servers)}", "admin")
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        opened.append(context)
        page = context.new_page()
        page.goto(url + "/")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("#who button")
        return page, url

    try:
        yield start
    finally:
        for context in opened:
            context.close()
        for server in reversed(with_servers):
            server.__exit__(None, None, None)


def _planted_links(page) -> list[str]:
    return page.evaluate(
        """() => [...document.querySelectorAll('a')]
            .map((a) => a.getAttribute('href') || a.getAttribute('xlink:href') || '')
            .filter((href) => href.includes('evil.example'))"""
    )


# -- charts draw names as text --------------------------------------------------------------
def test_chart_labels_and_legends_are_text_not_markup(studio_of, tmp_path):
    """A contributor's class labels and display names went into plotly as its HTML-like
    markup: an <a href> in them became a live link to another site inside every reader's
    chart (charts.js/metrics.js/compare.js pass names to plotly unescaped)."""
    ws = Workspace(str(tmp_path / "ws"))
    exp = Experiment(ws, "labels")
    runs = []
    for i in range(2):
        run = exp.start_logging(display_name=f"run {i} {LINK}", snapshot_directory=None)
        run.log_confusion_matrix("cm", {"class_labels": [LINK, "dog"], "matrix": [[1, 2], [3, 4]]})
        run.log("acc", 0.5 + i / 10)
        run.complete()
        runs.append(run)
    page, url = studio_of(ws)
    page.goto(f"{url}/runs/{runs[0].id}?tab=Metrics")
    page.wait_for_selector("[data-metric=cm] [data-drawn]")
    assert _planted_links(page) == []
    page.goto(f"{url}/compare?runs={runs[0].id},{runs[1].id}")
    page.wait_for_selector("#compare-chart[data-drawn]")
    assert _planted_links(page) == []


# -- a silent run is seen as the SDK sees it ------------------------------------------------
def test_the_studio_applies_the_liveness_rule_to_a_silent_run(studio_of, tmp_path, monkeypatch):
    """A script run whose supervisor (on another machine) stopped beating is Failed for
    Run.get_status(), but the run page, the runs table and the overview kept showing it
    Running, with a Cancel button, for ever: only the Logs tab's event stream applies the
    rule (GET /runs/{id}, /runs/search and /experiments/overview do not)."""
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "0.05")
    monkeypatch.setenv("RUNYARD_FAILED_SECONDS", "0.1")
    ws = Workspace(str(tmp_path / "ws"))
    exp = Experiment(ws, "silent")
    ws._store.create_runs(exp.id, [NewRun(id="silent-run")])
    ws._store.set_status("silent-run", "Running")
    ws._store.heartbeat("silent-run", "Running", supervisor="elsewhere-4242-1")
    time.sleep(0.3)
    page, url = studio_of(ws)
    page.goto(f"{url}/experiments/{exp.id}")
    page.wait_for_selector("#runs-table tbody tr")
    wait_js(page, "!document.querySelector('#runs-table tbody').textContent.includes('Running')", 6)
    page.goto(f"{url}/runs/silent-run")
    page.wait_for_selector("#run-status")
    wait_js(page, "document.querySelector('#run-status').textContent === 'Failed'", 6)
    assert page.locator("#cancel-run").is_hidden()


# -- status history --------------------------------------------------------------------------
def _hold_and_change(uri: str, run_id: str, status: str, hold: float) -> Any:
    """Another writer: lock the run's row (the database), wait ``hold`` seconds, change its
    status, commit. Returns a function that waits for it to be done."""
    locked = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            if uri.startswith("postgresql"):
                import psycopg

                with psycopg.connect(uri) as conn:
                    conn.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,))
                    locked.set()
                    time.sleep(hold)
                    conn.execute("UPDATE runs SET status = %s WHERE id = %s", (status, run_id))
            else:
                conn = sqlite3.connect(os.path.join(uri, "runyard.db"), isolation_level=None)
                conn.execute("BEGIN IMMEDIATE")
                locked.set()
                time.sleep(hold)
                conn.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))
                conn.execute("COMMIT")
                conn.close()
        except BaseException as exc:  # pragma: no cover - shown by the test
            errors.append(exc)
            locked.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert locked.wait(10)

    def done() -> None:
        thread.join(30)
        assert not errors, errors

    return done


def test_status_history_times_never_go_back_when_two_writers_meet(ws_uri, tmp_path):
    """set_status takes its time (time.time()) before it waits for the database; another
    writer's status change noted meanwhile (with the database's clock) comes first in the
    history but later in time: the studio's history showed Completed 0.3 s *before* the
    Finalizing it followed, and the run ended before its last status began."""
    uri, artifacts = ws_uri
    opened = open_workspace(uri, artifacts or str(tmp_path / "artifacts"))
    store = opened.store
    try:
        eid = store.get_or_create_experiment("history").id
        store.create_runs(eid, [NewRun(id="raced")])
        store.set_status("raced", "Running")
        done = _hold_and_change(uri, "raced", "Finalizing", hold=0.4)
        store.set_status("raced", "Completed")  # waits for the other writer
        done()
        history = store.status_history("raced")
        assert [c.status for c in history][-2:] == ["Finalizing", "Completed"]
        times = [c.time for c in history]
        assert times == sorted(times), history
        assert store.get_run("raced").end >= times[-2]
    finally:
        store.close()


# -- the run filter ---------------------------------------------------------------------------
def test_the_filter_finds_display_names_in_any_script(tmp_path):
    """'Other words match the display name', but a word that starts with a letter outside
    A-Z (модель, über, 日本語) was a 400 'cannot read it' (_filter_text's word pattern)."""
    with serve_workspace(str(tmp_path / "ws"), None, auth=True) as (url, store):
        _, token = store.create_token("filter", "reader")
        eid = store.get_or_create_experiment("words").id
        store.create_runs(eid, [NewRun(id="w1", display_name="модель über 日本語")])
        for word in ("модель", "über", "日本語", "модель and über"):
            answer = httpx.post(
                f"{url}/api/v1/runs/count",
                json={"query": {"experiment_id": eid}, "filter": word},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert answer.status_code == 200, (word, answer.text)
            assert answer.json() == {"count": 1}, word


def test_a_tag_chip_filters_by_a_key_with_a_backquote(studio_of, tmp_path):
    """Clicking a tag chip writes tags.`key` = 'value'; a key holding a backquote (a legal
    tag name) made a filter the grammar cannot read: the table showed an error instead."""
    ws = Workspace(str(tmp_path / "ws"))
    exp = Experiment(ws, "chips")
    run = exp.start_logging(display_name="tagged", snapshot_directory=None)
    run.tag("a`b", "v")
    run.complete()
    other = exp.start_logging(display_name="other", snapshot_directory=None)
    other.complete()
    page, url = studio_of(ws)
    page.goto(f"{url}/experiments/{exp.id}")
    page.wait_for_selector("#runs-table tbody tr")
    page.click("#runs-table button.chip:has-text('a`b=v')")
    wait_js(page, "document.querySelectorAll('#runs-table tbody tr').length === 1", 6)
    assert page.inner_text("#filter-error") == ""
    assert "tagged" in page.inner_text("#runs-table tbody")


# -- RunDetails -------------------------------------------------------------------------------
def test_run_details_draws_a_run_whose_metric_has_a_text_value(tmp_path):
    """A series logged 'warmup' then numbers (or a list with a text in it) made the whole
    widget fail with ValueError from the downsampling: no status, no log, no other chart.
    The studio answers 400 for that one chart and draws the rest."""
    from runyard.widgets import RunDetails

    ws = Workspace(str(tmp_path / "ws"))
    run = Experiment(ws, "widget").start_logging(snapshot_directory=None)
    run.log("loss", "warmup")
    for step in range(5):
        run.log("loss", 1.0 / (step + 1))
        run.log("acc", step / 10)
    run.log_list("mixed", [1.0, "n/a", 2.0])
    run.flush()
    data = RunDetails(run).get_widget_data()
    assert "acc" in [m["name"] for m in data["run_metrics"]]
    assert data["status"] == "Running"
    run.complete()


@pytest.mark.parametrize("error", [{"error": "the loader broke"}, {"error": None}])
def test_run_details_draws_a_failed_run_with_an_unusual_error(tmp_path, error):
    """A run failed through the API with an error document of another shape (any JSON
    object is accepted) broke RunDetails with AttributeError in _log_text; the studio
    shows such errors."""
    from runyard.widgets import RunDetails

    ws = Workspace(str(tmp_path / "ws"))
    run = Experiment(ws, "widget").start_logging(snapshot_directory=None)
    run.log("x", math.pi)
    run.flush()
    ws._store.set_status(run.id, "Failed", error=error)
    data = RunDetails(run).get_widget_data()
    assert data["status"] == "Failed" and "Error occurred" in data["run_logs"]
