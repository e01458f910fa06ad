"""The studio's figures, measured in a real headless Chromium (Playwright) against a
``runyard serve`` subprocess with auth on: the runs table of an experiment of 100,000
runs, a run page with a 1,000,000-point series, the downsampling endpoint, and how soon
a new log line and a status change reach an open page.

    python3 benchmarks/studio.py [--quick]      # also part of python3 dev.py bench
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from array import array

from server import serving

RUNS = 100_000
UNSEEN = ("long-unseen-1", "long-unseen-2", "long-unseen-3")
POINTS = 1_000_000
REPEATS = 5
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TARGETS = {
    "runs_table_first_paint_s": "<= 1",
    "runs_table_sort_s": "<= 0.5",
    "runs_table_filter_s": "<= 0.5",
    "run_page_1m_chart_s": "<= 1",
    "sampled_endpoint_first_ms": "",
    "sampled_endpoint_ms": "<= 50",
    "log_line_to_page_s": "<= 1",
    "status_change_to_page_s": "<= 1",
}


def populate(uri: str, artifacts: str, runs: int, points: int) -> tuple[str, str, str]:
    """An experiment of ``runs`` runs (tags, properties, one metric each) and a run with a
    ``points``-point series; returns (experiment id, big run id, its experiment's id)."""
    from runyard.records import NewRun, SeriesAppend
    from runyard.store import open_workspace

    store = open_workspace(uri, artifacts).store
    try:
        exp = store.get_or_create_experiment("studio-bench")
        now = time.time()
        for start in range(0, runs, 5000):
            batch = [
                NewRun(
                    id=f"b{i}",
                    display_name=f"run-{i}",
                    tags={"team": ("vision", "nlp", "speech")[i % 3]},
                    properties={"lr": str((i % 10) / 100)},
                )
                for i in range(start, min(runs, start + 5000))
            ]
            store.create_runs(exp.id, batch)
            for new in batch:
                value = (int(new.id[1:]) * 7919 % 10000) / 10000
                store.log_batch(new.id, [SeriesAppend("acc", "scalar", [0], [value], [now])])
        long = store.get_or_create_experiment("studio-bench-long")
        # the unseen runs are never shown in the browser: sampled_ms reads them first
        store.create_runs(long.id, [NewRun(id=r) for r in ("long-series", *UNSEEN)])
        values = array("d", (math.sin(i / 5000) + (i % 977 == 0) * 3 for i in range(points)))
        times = array("d", (now + i / 1000 for i in range(points)))
        for run_id in ("long-series", *UNSEEN):
            series = SeriesAppend("loss", "scalar", range(points), values, times)
            store.log_batch(run_id, [series])
        # the planner's statistics, as autovacuum gathers them soon after a bulk load
        store.db.write(lambda cur: cur.execute("ANALYZE"))  # type: ignore[attr-defined]
        return exp.id, "long-series", long.id
    finally:
        store.close()


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def browser_figures(url: str, token: str, exp_id: str, long_run: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("#who button")
        page.goto(f"{url}/runs/{long_run}?tab=Metrics")  # plotly.js cached, as on a 2nd visit
        page.wait_for_selector("[data-metric='loss'] .chart[data-drawn]")
        paints, sorts, filters, charts = [], [], [], []
        for _ in range(REPEATS):
            start = time.perf_counter()
            page.goto(f"{url}/experiments/{exp_id}")
            page.wait_for_selector("#runs-table tbody tr")
            paints.append(time.perf_counter() - start)
            start = time.perf_counter()  # until the sorted rows are drawn
            page.click("#runs-table th button:has-text('acc')")
            page.wait_for_selector("#runs-table[data-sort='metrics.acc'] tbody tr")
            sorts.append(time.perf_counter() - start)
            start = time.perf_counter()  # until the rows that match are drawn
            page.fill("#run-filter", FILTER)
            page.press("#run-filter", "Enter")
            page.wait_for_selector(f'#runs-table[data-filter="{FILTER}"] tbody tr')
            filters.append(time.perf_counter() - start)
        for _ in range(REPEATS):
            start = time.perf_counter()
            page.goto(f"{url}/runs/{long_run}?tab=Metrics")
            page.wait_for_selector("[data-metric='loss'] .chart[data-drawn]")
            charts.append(time.perf_counter() - start)
        figures["runs_table_first_paint_s"] = round(_median(paints), 3)
        figures["runs_table_sort_s"] = round(_median(sorts), 3)
        figures["runs_table_filter_s"] = round(_median(filters), 3)
        figures["run_page_1m_chart_s"] = round(_median(charts), 3)
        browser.close()
    return figures


# in the page: when each printed line arrived, and when the status badge changed
WATCH = """() => {
  window.__seen = []; window.__status = null;
  const log = document.querySelector('#log-tail'), badge = document.querySelector('#run-status');
  new MutationObserver(() => {
    const now = Date.now() / 1000;
    for (const m of log.textContent.matchAll(/tick ([0-9.]+)/g)) {
      if (!window.__seen.some((s) => s[0] === m[1])) window.__seen.push([m[1], now]);
    }
  }).observe(log, { childList: true, characterData: true, subtree: true });
  new MutationObserver(() => {
    const done = badge.querySelector('[data-status=CancelRequested], [data-status=Canceled]');
    if (!window.__status && done) window.__status = Date.now() / 1000;
  }).observe(badge, { childList: true, subtree: true });
}"""

FILTER = "tags.team = nlp and metrics.acc > 0.5"

SCRIPT = """
import time
for i in range(400):
    print(f"tick {time.time():.6f}", flush=True)
    time.sleep(0.25)
"""


def live_figures(url: str, token: str, uri: str, artifacts: str, folder: str) -> dict[str, float]:
    """How long a printed line and a status change take to show in an open run page."""
    from playwright.sync_api import sync_playwright

    from runyard import Experiment, ScriptRunConfig, Workspace

    source = os.path.join(folder, "live-project")
    os.makedirs(source, exist_ok=True)
    with open(os.path.join(source, "ticks.py"), "w") as fh:
        fh.write(textwrap.dedent(SCRIPT))
    ws = Workspace(uri, artifacts=artifacts)
    run = Experiment(ws, "studio-bench-live").submit(ScriptRunConfig(source, "ticks.py"))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(f"{url}/login")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_selector("#who button")
            page.goto(f"{url}/runs/{run.id}?tab=Logs")
            page.wait_for_selector("#log-tail:has-text('tick')", timeout=60_000)
            page.evaluate(WATCH)
            time.sleep(6)
            seen = page.evaluate("window.__seen")
            lags = [arrived - float(printed) for printed, arrived in seen]
            asked = time.time()
            run.cancel()
            deadline = time.monotonic() + 10
            while page.evaluate("window.__status") is None and time.monotonic() < deadline:
                time.sleep(0.02)
            shown = page.evaluate("window.__status")
            browser.close()
    finally:
        if run.get_status() not in ("Canceled", "Completed", "Failed"):
            run.cancel()
        run.wait_for_completion(raise_on_error=False)
        ws._store.close()
    return {
        "log_line_to_page_s": round(_median(lags), 3) if lags else math.nan,
        "log_lines_seen": len(lags),
        "status_change_to_page_s": round(shown - asked, 3) if shown else math.nan,
    }


def sampled_ms(url: str, token: str) -> tuple[float, float]:
    """The downsampling endpoint on 1M-point series: the median of the first answers for
    three series no page has shown (each read from the database) and the median of zooms
    into one of them afterwards (read once, kept)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    firsts = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for run_id in UNSEEN:
            start = time.perf_counter()
            answer = client.get(f"/api/v1/runs/{run_id}/series/sampled",
                                params={"name": "loss", "width": 1200})  # fmt: skip
            answer.raise_for_status()
            firsts.append(time.perf_counter() - start)
        path = f"/api/v1/runs/{UNSEEN[0]}/series/sampled"
        times = []
        for i in range(20):
            window = {"start": i * 40_000, "end": i * 40_000 + 200_000} if i % 2 else {}
            start = time.perf_counter()
            answer = client.get(path, params={"name": "loss", "width": 1200, **window})
            answer.raise_for_status()
            times.append(time.perf_counter() - start)
    return round(_median(firsts) * 1000, 1), round(_median(times) * 1000, 1)


def measure_one(uri: str, folder: str, runs: int, points: int) -> dict[str, float]:
    artifacts = os.path.join(folder, f"studio-artifacts-{abs(hash(uri)) % 10000}")
    started = time.perf_counter()
    exp_id, long_run, _ = populate(uri, artifacts, runs, points)
    print(
        f"  studio data ({runs:,} runs) in {time.perf_counter() - started:.0f} s", file=sys.stderr
    )
    with serving(uri, folder) as (server, token):
        url = server.url
        figures = browser_figures(url, token, exp_id, long_run)
        first, zoom = sampled_ms(url, token)
        figures["sampled_endpoint_first_ms"] = first
        figures["sampled_endpoint_ms"] = zoom
        figures.update(live_figures(url, token, uri, server.artifacts, folder))
    return figures


def measure(folder: str, pg_uri: str | None, quick: bool = False) -> dict[str, dict[str, float]]:
    """The figures on SQLite, and on PostgreSQL when ``pg_uri`` is given."""
    if not os.path.exists(CHROMIUM):
        print("studio figures skipped: no Chromium (apt-get install chromium)", file=sys.stderr)
        return {}
    runs, points = (5_000, 100_000) if quick else (RUNS, POINTS)
    found = {"sqlite": measure_one(os.path.join(folder, "studio-ws"), folder, runs, points)}
    if pg_uri is not None:
        from pg_schema import drop_schema, new_schema

        made = new_schema(pg_uri, "studio")
        if made is not None:
            uri, schema = made
            try:
                found["postgresql"] = measure_one(uri, folder, runs, points)
            finally:
                drop_schema(pg_uri, schema)
    return found


def rows(found: dict[str, dict[str, float]]) -> list[list[str]]:
    names = [*TARGETS, "log_lines_seen"]
    return [[n, *(f"{found[db].get(n, '')}" for db in found), TARGETS.get(n, "")] for n in names]


if __name__ == "__main__":
    from tabulate import tabulate

    quick = "--quick" in sys.argv
    pg = os.environ.get("RUNYARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        result = measure(tmp, None if "--sqlite" in sys.argv else pg, quick)
    print(tabulate(rows(result), headers=["figure", *result, "target"], disable_numparse=True))
    print(json.dumps({"studio": result}))
