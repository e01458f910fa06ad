"""A submitter or a supervisor killed before its run executes never holds up the local queue.

Runs wait in submission order, so an older run that waits forever stops every later one.
The heartbeat rule would free the queue only after ``RUNYARD_NOT_RESPONDING_SECONDS``; on
the run's own machine the dead process must be seen at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tests.execution.conftest import new_project, supervisor_of, wait_until

from runyard import ScriptRunConfig


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "300")  # the heartbeat rule is no help
    yield from new_project(tmp_path, monkeypatch, slots=1, own_temp=True)


KILLED_SUBMITTER = """
import os, signal, sys
from runyard import Experiment, ScriptRunConfig, Workspace
import runyard.execution.submit as submit

def killed(*args):  # the run exists, its supervisor is not started yet
    print("created", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

submit._start_supervisor = killed
Experiment(Workspace(sys.argv[1]), "scripts").submit(ScriptRunConfig(sys.argv[2], "hello.py"))
"""


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def test_a_submitter_killed_before_the_supervisor_starts_holds_up_nothing(project):
    project.script("hello.py", "print('hello')\n")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_SUBMITTER, project.ws.uri, str(project.root)],
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL and killed.stdout == b"created\n"
    (orphan,) = project.exp.get_runs()
    started = time.monotonic()
    run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    assert time.monotonic() - started < 20  # not the 300 s of the heartbeat rule
    details = orphan.get_details()
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "SupervisorDied"
    assert "never queued" in details["error"]["error"]["message"]
    temp = Path(tempfile.gettempdir())
    wait_until(lambda: not _files_under(temp), timeout=10)


def test_a_supervisor_killed_while_queued_holds_up_nothing(project):
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(1)\n")
    project.script("hello.py", "print('hello')\n")
    first = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    doomed = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    wait_until(lambda: doomed.get_status() == "Queued", timeout=30)
    supervisor_of(doomed.id).send_signal(signal.SIGKILL)
    started = time.monotonic()
    later = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    assert later.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    assert time.monotonic() - started < 20  # not the 300 s of the heartbeat rule
    assert first.get_status() == "Completed"
    assert doomed.get_details()["error"]["error"]["code"] == "SupervisorDied"


def test_a_run_being_submitted_is_alive_before_its_supervisor_records_itself(project):
    """Between the submitter's last moment and the supervisor's first, the lock speaks."""
    from runyard import _liveness
    from runyard.records import SupervisedRun

    path = _liveness.supervisor_stderr_path("r1")
    holder = subprocess.Popen(  # as a supervisor that inherited the lock
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\nf = open(sys.argv[1], 'wb')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)",
            path,
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        dead_submitter = SupervisedRun("r1", "NotStarted", _dead_process_name(), 0.0)
        assert _liveness.supervisor_alive(dead_submitter) is True
        assert _liveness.supervisor_alive(SupervisedRun("r1", "NotStarted", None, 0.0)) is True
    finally:
        holder.kill()
        holder.wait()
    assert _liveness.supervisor_alive(dead_submitter) is False
    assert _liveness.supervisor_alive(SupervisedRun("r1", "NotStarted", None, 0.0)) is False
    os.unlink(path)
    assert _liveness.supervisor_alive(SupervisedRun("r1", "NotStarted", None, 0.0)) is None


def _dead_process_name() -> str:
    from runyard import _owners

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    name = _owners.process_name(proc.pid, zombie_ok=True)
    proc.wait()
    return name


FAKE_PYTHON = """#!/bin/sh
# an environment build step that starts a daemon in its own session, then works a while
setsid sh -c 'sleep 600' &
echo "$$ $!" > "{pids}"
sleep 600
"""


def test_a_killed_build_keeper_leaves_no_process_of_the_build(project, tmp_path):
    """pip's processes whose keeper is killed come to the supervisor, which stops them."""
    import psutil

    from runyard import Environment

    pids = tmp_path / "pids.txt"
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.format(pids=pids))
    fake.chmod(0o755)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("demo\n")
    env = Environment.from_pip_requirements("fake", str(requirements))
    env.python.interpreter_path = str(fake)
    project.script("hello.py", "print('hello')\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py", environment=env))
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, timeout=30)
    build = [int(pid) for pid in pids.read_text().split()]
    (keeper,) = supervisor_of(run.id).children()
    keeper.kill()
    details = run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "EnvironmentBuildFailed"

    def gone() -> bool:
        for pid in build:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
        return True

    try:
        wait_until(gone, timeout=10)
    finally:
        for pid in build:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
