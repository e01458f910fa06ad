"""Stopping a script run: cancel from anywhere, fail from outside, Ctrl-C while watching."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from runyard import ScriptRunConfig

from .conftest import wait_until

STUBBORN = """
import os, signal, subprocess, sys, time
# a grandchild that ignores SIGTERM and leaves the process group
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{os.getpid()} {child.pid}")
print("started", flush=True)
time.sleep(600)
"""


def test_cancel_stops_every_process_even_a_stubborn_grandchild(project, tmp_path):
    project.script("stubborn.py", STUBBORN)
    pids_file = tmp_path / "pids.txt"
    run = project.exp.submit(ScriptRunConfig(str(project.root), "stubborn.py", [str(pids_file)]))
    wait_until(lambda: "started" in project.log_text(run), timeout=30)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert all(psutil.pid_exists(p) for p in pids)
    started = time.monotonic()
    project.ws.get_run(run.id).cancel()  # any handle, any process
    assert run.get_status() in ("CancelRequested", "Canceled")
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=10)
    gone_after = time.monotonic() - started
    assert gone_after < 5, gone_after
    details = run.wait_for_completion(wait_post_processing=True)
    assert details["status"] == "Canceled"
    assert "started" in project.log_text(run)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancel_from_another_process(project):
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    wait_until(lambda: "up" in project.log_text(run), timeout=30)
    code = (
        f"from runyard import Workspace; Workspace({project.ws.uri!r}).get_run({run.id!r}).cancel()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Canceled"


def test_cancel_while_queued(project):
    project.ws.max_concurrent_runs = 1
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    first = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    second = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    wait_until(lambda: second.get_status() == "Queued", timeout=30)
    second.cancel()
    assert second.wait_for_completion(wait_post_processing=True)["status"] == "Canceled"
    assert "user_logs/std_log.txt" not in second.get_file_names()
    first.cancel()
    assert first.wait_for_completion(wait_post_processing=True)["status"] == "Canceled"


def test_fail_from_outside_stops_the_script(project, tmp_path):
    project.script(
        "sleepy.py",
        "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "print('up', flush=True)\ntime.sleep(600)\n",
    )
    pid_file = tmp_path / "pid.txt"
    run = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py", [str(pid_file)]))
    wait_until(lambda: "up" in project.log_text(run), timeout=30)
    run.fail()
    assert run.get_status() == "Failed"
    wait_until(lambda: not _alive(int(pid_file.read_text())), timeout=10)


WATCHER = """
import sys
from runyard import Workspace
run = Workspace(sys.argv[1]).get_run(sys.argv[2])
try:
    run.wait_for_completion(show_output=True)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", flush=True)
    sys.exit(7)
"""


def test_ctrl_c_stops_watching_not_the_run(project):
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, project.ws.uri, run.id],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until(lambda: "up" in project.log_text(run), timeout=30)
    time.sleep(0.5)
    os.kill(watcher.pid, signal.SIGINT)
    out, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 7
    assert "up" in out
    assert "ExperimentExecutionError: The output streaming for the run interrupted" in out
    assert "still executing" in out
    assert run.get_status() == "Running"
    run.cancel()
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Canceled"
