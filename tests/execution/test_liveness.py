"""Liveness of supervised runs: the database's clock, and the process on its own machine.

Clock skew is simulated by moving this process's ``time.time``: before the database's clock
was used, a reader (or a supervisor) with a wrong clock failed live runs.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

from runyard import _liveness, _owners
from runyard.records import NewRun
from tests.conftest import needs_local

ELSEWHERE = "0123456789ab-1-1"  # a supervisor process on another machine


def _beating_run(ws, supervisor: str) -> str:
    store = ws._store
    experiment = store.get_or_create_experiment("clocks")
    run_id = f"beating_{uuid.uuid4().hex[:8]}"
    store.create_runs(
        experiment.id,
        [NewRun(id=run_id, status="Running", heartbeat=True, type="azureml.scriptrun")],
    )
    store.heartbeat(run_id, supervisor=supervisor)
    return run_id


def _age_heartbeats(ws, seconds: float) -> None:
    needs_local(ws)
    ws._store.db.write(
        lambda cur: cur.execute("UPDATE runs SET heartbeat_at = heartbeat_at - ?", (seconds,))
    )


def test_a_reader_whose_clock_runs_ahead_does_not_fail_a_live_run(ws, monkeypatch):
    run_id = _beating_run(ws, ELSEWHERE)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    assert _liveness.expire_silent_runs(ws._store) == 0
    assert ws._store.get_run(run_id).status == "Running"


def test_a_supervisor_whose_clock_runs_behind_keeps_its_run_alive(ws, monkeypatch):
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)
    run_id = _beating_run(ws, ELSEWHERE)  # created and beating an hour "ago"
    ws._store.heartbeat(run_id, "Running")
    monkeypatch.setattr(time, "time", real)
    assert _liveness.expire_silent_runs(ws._store) == 0
    assert ws._store.get_run(run_id).status == "Running"


def test_a_silent_supervisor_elsewhere_still_expires(ws, monkeypatch):
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "0.2")
    monkeypatch.setenv("RUNYARD_FAILED_SECONDS", "0.5")
    run_id = _beating_run(ws, ELSEWHERE)
    time.sleep(0.3)
    assert _liveness.expire_silent_runs(ws._store) == 1
    assert ws._store.get_run(run_id).status == "NotResponding"
    time.sleep(0.3)
    assert _liveness.expire_silent_runs(ws._store) == 1
    failed = ws._store.get_run(run_id)
    assert failed.status == "Failed" and "heartbeat" in failed.error["error"]["message"]


def test_on_the_supervisors_machine_the_process_decides_not_the_clock(ws):
    alive = _beating_run(ws, _owners.process_name())  # this process: alive
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    name = _owners.process_name(child.pid, zombie_ok=True)
    child.wait()
    dead_late = _beating_run(ws, name)
    _age_heartbeats(ws, 7200)  # as after a laptop slept two hours
    dead_fresh = _beating_run(ws, name)
    assert _liveness.expire_silent_runs(ws._store) == 1
    assert ws._store.get_run(alive).status == "Running"
    failed = ws._store.get_run(dead_late)
    assert failed.status == "Failed" and failed.error["error"]["code"] == "SupervisorDied"
    # a fresh heartbeat does not hide a dead process from a reader asking for that run
    assert ws._store.get_run(dead_fresh).status == "Running"
    assert _liveness.expire_silent_runs(ws._store, ws._artifacts, dead_fresh) == 1
    assert ws._store.get_run(dead_fresh).status == "Failed"


def test_a_cancel_requested_run_whose_supervisor_is_gone_is_canceled(ws):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    name = _owners.process_name(child.pid, zombie_ok=True)
    child.wait()
    run_id = _beating_run(ws, name)
    ws._store.set_status(run_id, "CancelRequested")
    assert _liveness.expire_silent_runs(ws._store, ws._artifacts, run_id) == 1
    assert ws._store.get_run(run_id).status == "Canceled"
