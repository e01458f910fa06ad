"""The live parts of the studio against a real script run: its status and log appear in
the open page without reloading, and the Cancel button stops its processes."""

from __future__ import annotations

import textwrap
import time

import psutil

from runyard import Experiment, ScriptRunConfig
from tests.studio.conftest import shot, sign_in, wait_js

SCRIPT = """
import sys, time
from runyard import Run
run = Run.get_context()
print("started", flush=True)
for i in range(1200):
    run.log("progress", i)
    print(f"line {i}", flush=True)
    time.sleep(0.1)
"""


def _script_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_status_and_log_update_live_and_cancel_stops_the_run(page, studio, tmp_path):
    source = tmp_path / "project"
    source.mkdir()
    (source / "slow_studio_script.py").write_text(textwrap.dedent(SCRIPT))
    sign_in(page, studio)
    exp = Experiment(studio.ws, "live")
    page.goto(f"{studio.url}/experiments/{exp.id}")
    page.wait_for_selector("#runs-table")
    run = exp.submit(ScriptRunConfig(source_directory=str(source), script="slow_studio_script.py"))
    try:
        _watch_and_cancel(page, studio, exp, run)
    finally:
        if run.get_status() not in ("Canceled", "Completed", "Failed"):
            run.cancel()


def _watch_and_cancel(page, studio, exp, run) -> None:
    # the new run and its status appear in the open table, without a reload
    page.wait_for_selector(f"#runs-table tr[data-run='{run.id}']", timeout=10_000)
    page.wait_for_selector(
        f"#runs-table tr[data-run='{run.id}'] [data-status='Running']", timeout=30_000
    )
    page.goto(f"{studio.url}/runs/{run.id}?tab=Logs")
    page.wait_for_selector("#run-status [data-status='Running']", timeout=30_000)
    page.wait_for_selector("#log-tail:has-text('started')", timeout=30_000)
    # a line printed now shows within about a second
    seen = page.inner_text("#log-tail").count("\n")
    wait_js(
        page, f"document.querySelector('#log-tail').textContent.split('\\n').length > {seen + 5}"
    )
    assert len(_script_processes("slow_studio_script.py")) >= 1
    shot(page, "run-live-log")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")
    page.wait_for_selector("#run-status [data-status='Canceled']", timeout=30_000)
    assert run.get_status() == "Canceled"
    deadline = time.monotonic() + 15
    while _script_processes("slow_studio_script.py") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _script_processes("slow_studio_script.py"), "the script still runs"
    page.wait_for_selector("#log-tail:has-text('Run is canceled.')", timeout=15_000)
    assert page.locator("#cancel-run").is_hidden()


def test_cancel_asks_first(page, studio, tmp_path):
    source = tmp_path / "project"
    source.mkdir()
    (source / "slow_studio_script2.py").write_text(textwrap.dedent(SCRIPT))
    run = Experiment(studio.ws, "live").submit(
        ScriptRunConfig(source_directory=str(source), script="slow_studio_script2.py")
    )
    try:
        sign_in(page, studio, f"/runs/{run.id}")
        page.wait_for_selector("#run-status [data-status='Running']", timeout=30_000)
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click("#cancel-run")
        time.sleep(1.5)
        assert run.get_status() == "Running"  # dismissed: nothing changed
    finally:
        run.cancel()
        run.wait_for_completion(raise_on_error=False)
