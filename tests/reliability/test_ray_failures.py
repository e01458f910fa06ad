"""Attacks on runs sent to a Ray cluster: jobs Ray never had, runs waiting for room while
readers apply the liveness rule, a process lost on the cluster."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from tests.compute.test_ray_runs import processes_with
from tests.execution.conftest import wait_until
from tests.ray_fixtures import TARGET

from runyard import ScriptRunConfig, _ray_jobs
from runyard.execution import PyTorchConfiguration
from runyard.records import NewRun

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster: one test worker

QUICK_LIVENESS = {
    "RUNYARD_HEARTBEAT_SECONDS": "0.2",
    "RUNYARD_NOT_RESPONDING_SECONDS": "1",
    "RUNYARD_FAILED_SECONDS": "2",
}


def queued_run(cluster, address: str, submission_id: str):
    """A Queued Ray run as a submitter leaves it, named after a job at ``address``."""
    store = cluster.ws._store
    name = _ray_jobs.supervisor_name(address, submission_id)
    (record,) = store.create_runs(
        cluster.exp.id,
        [NewRun(id=f"r{time.time_ns()}", type="azureml.scriptrun", status="NotStarted",
                target=TARGET, properties={_ray_jobs.PROPERTY: name}, heartbeat=True)],
    )  # fmt: skip
    store.heartbeat(record.id, supervisor=name)
    store.set_status(record.id, "Queued")
    return cluster.ws.get_run(record.id)


def test_a_run_whose_job_ray_never_had_fails(pg_cluster, monkeypatch):
    # the submitter was killed between creating the run and handing the job to Ray
    for key, value in QUICK_LIVENESS.items():
        monkeypatch.setenv(key, value)
    run = queued_run(pg_cluster, pg_cluster.url, "runyard-" + "0" * 32)
    time.sleep(1.5)
    wait_until(lambda: run.get_status() == "Failed", timeout=10, every=0.3)
    message = run.get_details()["error"]["error"]["message"]
    assert "has no job runyard-" + "0" * 32 in message


def test_a_run_waiting_for_room_is_not_failed_by_readers(pg_cluster, monkeypatch):
    pg_cluster.script("hold.py", "import time\nprint('holding', flush=True)\ntime.sleep(60)\n")
    config = ScriptRunConfig(str(pg_cluster.root), "hold.py", compute_target=TARGET)
    holders = [pg_cluster.exp.submit(config) for _ in range(2)]  # both CPUs of the cluster
    for holder in holders:
        wait_until(lambda h=holder: h.get_status() == "Running", timeout=60)
    waiting = pg_cluster.exp.submit(config)
    pg_cluster.ws._store.attach_compute("down-ray", "ray", "http://127.0.0.1:9")  # gone since
    unreachable = queued_run(pg_cluster, "http://127.0.0.1:9", "runyard-" + "1" * 32)
    # an address no target has is nobody's cluster: the heartbeat rule alone judges the run
    stranger = queued_run(pg_cluster, "http://127.0.0.1:10", "runyard-" + "2" * 32)
    for key, value in QUICK_LIVENESS.items():
        monkeypatch.setenv(key, value)
    time.sleep(4)  # many heartbeats missed: neither has a supervisor yet
    assert waiting.get_status() == "Queued"  # Ray says its job is pending
    assert unreachable.get_status() == "Queued"  # Ray cannot be asked: left be
    assert stranger.get_status() == "Failed"
    for run in (*holders, waiting, unreachable):
        run.cancel()
    for run in (*holders, waiting):
        wait_until(lambda r=run: r.get_status() == "Canceled", timeout=30, every=0.3)


def test_a_process_lost_on_the_cluster_fails_the_run(pg_cluster):
    marker = f"lost-{time.time_ns()}"  # hosts of earlier tests may still be ending
    pg_cluster.script("two.py", "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    config = ScriptRunConfig(
        str(pg_cluster.root), "two.py", [marker], compute_target=TARGET,
        distributed_job_config=PyTorchConfiguration(process_count=2),
    )  # fmt: skip
    run = pg_cluster.exp.submit(config)
    wait_until(lambda: "up" in pg_cluster.read(run, "user_logs/std_log_process_1.txt"), 60)
    hosts = [p for p in psutil.process_iter(["cmdline"]) if _hosts(p, marker)]
    assert len(hosts) == 2
    os.kill(hosts[-1].pid, signal.SIGKILL)  # as the OOM killer would
    wait_until(lambda: run.get_status() == "Failed", timeout=30, every=0.3)
    error = run.get_details()["error"]["error"]
    assert error["code"] == "ProcessLost" and "lost on the Ray cluster" in error["message"]
    wait_until(lambda: not processes_with(marker), timeout=10)


def _hosts(proc: psutil.Process, marker: str) -> bool:
    """Is ``proc`` a Ray actor hosting a process of the run whose script has ``marker``?"""
    cmdline = proc.info["cmdline"] or []
    if not cmdline or not cmdline[0].startswith("ray::ProcessHost"):
        return False
    try:
        return any(marker in c.cmdline() for c in proc.children(recursive=True))
    except psutil.Error:
        return False
