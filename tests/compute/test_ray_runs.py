"""Script runs on a real local Ray cluster, as users submit them."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from runyard import Environment, Run, ScriptRunConfig, Workspace
from runyard.errors import UserError
from tests.execution.conftest import wait_until
from tests.ray_fixtures import TARGET

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster: one test worker

TRAIN = """
    import os, sys, time
    from runyard import Run
    print("hello from the cluster", flush=True)
    run = Run.get_context()
    for i in range(3):
        run.log("loss", 1.0 / (i + 1))
    run.log("seed", os.environ["SEED"])
    os.makedirs("outputs", exist_ok=True)
    os.makedirs("logs", exist_ok=True)
    open("outputs/model.txt", "w").write("weights")
    open("logs/train.log", "w").write("epoch 1")
    print("to stderr", file=sys.stderr, flush=True)
"""


def statuses(run: Run) -> list[str]:
    return [c.status for c in run.experiment.workspace._store.status_history(run.id)]


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_run_goes_to_ray_and_back(cluster, capsys):
    cluster.script("train.py", TRAIN)
    config = ScriptRunConfig(str(cluster.root), "train.py", compute_target=TARGET)
    config.run_config.environment_variables["SEED"] = "7"
    run = cluster.exp.submit(config)
    assert run.get_status() in (
        "Queued",
        "Preparing",
        "Starting",
        "Running",
        "Finalizing",
        "Completed",
    )
    run.wait_for_completion(show_output=True)
    assert "hello from the cluster" in capsys.readouterr().out
    assert run.get_status() == "Completed"
    assert statuses(run) == [
        "NotStarted", "Queued", "Preparing", "Starting", "Running", "Finalizing", "Completed"
    ]  # fmt: skip
    assert run.get_metrics() == {"loss": [1.0, 0.5, 1 / 3], "seed": "7"}
    names = run.get_file_names()
    assert {"outputs/model.txt", "logs/train.log", "user_logs/std_log.txt"} <= set(names)
    assert cluster.read(run, "outputs/model.txt") == "weights"
    log = cluster.read(run, "user_logs/std_log.txt")
    assert "hello from the cluster" in log and "to stderr" in log
    details = run.get_details()
    assert details["target"] == TARGET
    assert details["properties"]["_azureml.ComputeTargetType"] == "ray"


def test_the_log_is_live_while_the_script_runs(cluster):
    cluster.script("slow.py", """
        import time
        print("started", flush=True)
        time.sleep(30)
    """)  # fmt: skip
    run = cluster.exp.submit(ScriptRunConfig(str(cluster.root), "slow.py", compute_target=TARGET))
    wait_until(lambda: "started" in cluster.read(run, "user_logs/std_log.txt"), timeout=60)
    assert run.get_status() == "Running"
    run.cancel()
    run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert run.get_status() == "Canceled"


@pytest.fixture(scope="session")
def probe_wheel(tmp_path_factory) -> str:
    """A one-module wheel (``runyard_probe`` 1.0), installed by pip with no index."""
    import zipfile

    name = "runyard_probe-1.0-py3-none-any.whl"
    files = {
        "runyard_probe/__init__.py": "VERSION = '1.0'\n",
        "runyard_probe-1.0.dist-info/METADATA": (
            "Metadata-Version: 2.1\nName: runyard-probe\nVersion: 1.0\n"
        ),
        "runyard_probe-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{path},,\n" for path in files) + "runyard_probe-1.0.dist-info/RECORD,,\n"
    path = os.path.join(tmp_path_factory.mktemp("wheels"), name)
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in {**files, "runyard_probe-1.0.dist-info/RECORD": record}.items():
            zf.writestr(member, text)
    return path


def test_a_pip_environment_is_ray_s_runtime_environment(pg_cluster, probe_wheel):
    cluster = pg_cluster
    cluster.script("pipenv.py", """
        import sys, importlib.metadata
        import runyard_probe
        print("python", sys.executable)
        print("probe", importlib.metadata.version("runyard-probe"), flush=True)
    """)  # fmt: skip
    env = Environment("probe")
    wheel = probe_wheel
    env.python.pip_requirements = [wheel]
    config = ScriptRunConfig(str(cluster.root), "pipenv.py", compute_target=TARGET, environment=env)
    run = cluster.exp.submit(config)
    run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    log = cluster.read(run, "user_logs/std_log.txt")
    assert run.get_status() == "Completed", (run.get_details().get("error"), log)
    assert "probe 1.0" in log
    assert "runtime_resources/pip" in log  # Ray's virtualenv, not the cluster's Python
    assert "Preparing" in statuses(run)
    assert f"Ray builds the environment: pip {wheel}" in cluster.read(
        run, "system_logs/supervisor.txt"
    )


def test_a_failing_script_fails_the_run_with_its_stderr(cluster):
    cluster.script("fail.py", """
        import sys
        print("something broke", file=sys.stderr)
        sys.exit(3)
    """)  # fmt: skip
    run = cluster.exp.submit(ScriptRunConfig(str(cluster.root), "fail.py", compute_target=TARGET))
    run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert run.get_status() == "Failed"
    error = run.get_details()["error"]["error"]
    assert error["code"] == "ScriptFailed"
    assert "exit code 3" in error["message"] and "something broke" in error["message"]


def test_cancel_stops_every_process_of_the_run(pg_cluster):
    marker = f"marker-{time.time_ns()}"
    pg_cluster.script("spawn.py", f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
        print("children started", flush=True)
        time.sleep(120)
    """)  # fmt: skip
    config = ScriptRunConfig(str(pg_cluster.root), "spawn.py", compute_target=TARGET)
    run = pg_cluster.exp.submit(config)
    wait_until(lambda: "children started" in pg_cluster.read(run, "user_logs/std_log.txt"), 60)
    assert processes_with(marker)
    # from anywhere: another process, with its own Workspace
    other = Workspace(pg_cluster.ws.uri, artifacts=pg_cluster.ws.artifacts_root)
    other.get_run(run.id).cancel()
    wait_until(lambda: run.get_status() == "Canceled", timeout=15)
    wait_until(lambda: not processes_with(marker), timeout=10)
    other._store.close()


def test_cancel_while_ray_has_no_room_stops_the_job(cluster):
    from runyard.execution import PyTorchConfiguration

    cluster.script("big.py", "print('never')\n")
    config = ScriptRunConfig(
        str(cluster.root), "big.py", compute_target=TARGET,
        distributed_job_config=PyTorchConfiguration(process_count=3),  # the cluster has 2 CPUs
    )  # fmt: skip
    run = cluster.exp.submit(config)
    waiting = "waiting for 3 CPUs on 1 node(s)"
    wait_until(lambda: waiting in cluster.read(run, "system_logs/supervisor.txt"), timeout=60)
    time.sleep(2)
    assert run.get_status() == "Queued"
    run.cancel()
    wait_until(lambda: run.get_status() == "Canceled", timeout=20)


def test_the_time_limit_stops_the_run(pg_cluster):
    cluster = pg_cluster
    cluster.script("forever.py", "import time\nprint('going', flush=True)\ntime.sleep(120)\n")
    config = ScriptRunConfig(
        str(cluster.root), "forever.py", compute_target=TARGET, max_run_duration_seconds=3
    )
    run = cluster.exp.submit(config)
    run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert run.get_status() == "Failed"
    assert run.get_details()["error"]["error"]["code"] == "RunTimeLimitExceeded"


def test_a_job_killed_on_the_cluster_fails_with_ray_s_reason(pg_cluster):
    pg_cluster.script("wait.py", "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    config = ScriptRunConfig(str(pg_cluster.root), "wait.py", compute_target=TARGET)
    run = pg_cluster.exp.submit(config)
    wait_until(lambda: "up" in pg_cluster.read(run, "user_logs/std_log.txt"), timeout=60)
    (supervisor,) = [
        p for p in processes_with("runyard.execution.ray_supervisor") if run.id in p.cmdline()
    ]
    os.kill(supervisor.pid, signal.SIGKILL)  # as the OOM killer or a lost node would
    wait_until(lambda: run.get_status() == "Failed", timeout=30, every=0.5)
    message = run.get_details()["error"]["error"]["message"]
    assert "Ray job runyard-" in message and "FAILED" in message, message
    wait_until(lambda: not [p for p in processes_with("wait.py")], timeout=10)


def test_the_submitter_may_go_away(pg_cluster, tmp_path):
    import subprocess
    import sys

    pg_cluster.script("train.py", TRAIN)
    code = f"""
import sys
from runyard import Workspace, Experiment, ScriptRunConfig
ws = Workspace({pg_cluster.ws.uri!r}, artifacts={pg_cluster.ws.artifacts_root!r})
config = ScriptRunConfig({str(pg_cluster.root)!r}, "train.py", compute_target={TARGET!r})
config.run_config.environment_variables["SEED"] = "1"
print(Experiment(ws, "gone").submit(config).id)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    run = pg_cluster.ws.get_run(out.stdout.strip().splitlines()[-1])
    run.wait_for_completion(wait_post_processing=True)
    assert run.get_status() == "Completed"
    assert run.get_metrics()["seed"] == "1"


def test_a_workspace_the_cluster_cannot_reach_is_refused(tmp_path, pg_cluster):
    ws = Workspace(str(tmp_path / "local-ws"))
    from runyard.compute import ComputeTarget, RayCompute

    ComputeTarget.attach(ws, TARGET, RayCompute.attach_configuration(pg_cluster.url))
    pg_cluster.script("train.py", TRAIN)
    from runyard import Experiment

    with pytest.raises(UserError, match="cannot reach this workspace"):
        Experiment(ws, "x").submit(
            ScriptRunConfig(str(pg_cluster.root), "train.py", compute_target=TARGET)
        )
    assert list(Experiment(ws, "x").get_runs()) == []
