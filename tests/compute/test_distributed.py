"""Distributed runs on a real Ray cluster: torch.distributed over gloo, one run for all."""

from __future__ import annotations

import time

import pytest

from runyard import ScriptRunConfig
from runyard.execution import MpiConfiguration, PyTorchConfiguration
from tests.compute.test_ray_runs import processes_with
from tests.execution.conftest import wait_until
from tests.ray_fixtures import TARGET, needs_torch

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster: one test worker

ALL_REDUCE = """
    import os
    import torch
    import torch.distributed as dist
    from runyard import Run

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    total = torch.tensor([rank + 1.0])
    dist.all_reduce(total)
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    print("env", " ".join(f"{n}={os.environ[n]}" for n in names))
    print(f"rank {rank} of {dist.get_world_size()}: sum {total.item()}", flush=True)
    run = Run.get_context()
    run.log("sum", total.item())
    run.log(f"rank_{rank}", rank)
    print("run", run.id, flush=True)
    dist.destroy_process_group()
"""


def test_two_processes_all_reduce_over_gloo_into_one_run(served_cluster):
    # through a server: every process reaches it with the run's own token
    cluster = served_cluster
    needs_torch()
    cluster.script("ddp.py", ALL_REDUCE)
    config = ScriptRunConfig(
        str(cluster.root), "ddp.py", compute_target=TARGET,
        distributed_job_config=PyTorchConfiguration(communication_backend="gloo", process_count=2),
    )  # fmt: skip
    run = cluster.exp.submit(config)
    run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert run.get_status() == "Completed", run.get_details().get("error")
    for rank in (0, 1):
        log = cluster.read(run, f"user_logs/std_log_process_{rank}.txt")
        assert f"rank {rank} of 2: sum 3.0" in log
        assert f"RANK={rank} WORLD_SIZE=2 LOCAL_RANK={rank} MASTER_ADDR=" in log
        assert f"run {run.id}" in log  # Run.get_context() is the same run in every process
    assert "rank 0 of 2" in cluster.read(run, "user_logs/std_log.txt")
    metrics = run.get_metrics()
    assert metrics["sum"] == [3.0, 3.0]
    assert metrics["rank_0"] == 0 and metrics["rank_1"] == 1


def test_a_failing_rank_fails_the_run_and_stops_the_others(pg_cluster):
    marker = f"rank-sleeper-{time.time_ns()}"
    pg_cluster.script("one_fails.py", f"""
        import os, sys, time
        if os.environ["RANK"] == "1":
            print("rank 1 gives up", file=sys.stderr)
            sys.exit(4)
        import subprocess
        subprocess.run([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
    """)  # fmt: skip
    config = ScriptRunConfig(
        str(pg_cluster.root), "one_fails.py", compute_target=TARGET,
        distributed_job_config=MpiConfiguration(process_count_per_node=2),
    )  # fmt: skip
    run = pg_cluster.exp.submit(config)
    run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert run.get_status() == "Failed"
    message = run.get_details()["error"]["error"]["message"]
    assert "process 1 of 2 ended with exit code 4" in message and "rank 1 gives up" in message
    wait_until(lambda: not processes_with(marker), timeout=10)


def test_cancel_stops_every_rank(pg_cluster):
    marker = f"rank-cancel-{time.time_ns()}"
    pg_cluster.script("wait_all.py", f"""
        import subprocess, sys
        print("waiting", flush=True)
        subprocess.run([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
    """)  # fmt: skip
    config = ScriptRunConfig(
        str(pg_cluster.root), "wait_all.py", compute_target=TARGET,
        distributed_job_config=PyTorchConfiguration(process_count=2),
    )  # fmt: skip
    run = pg_cluster.exp.submit(config)
    wait_until(lambda: len(processes_with(marker)) == 2, timeout=60)
    run.cancel()
    wait_until(lambda: run.get_status() == "Canceled", timeout=15)
    wait_until(lambda: not processes_with(marker), timeout=10)
