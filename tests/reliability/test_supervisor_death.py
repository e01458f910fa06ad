"""A supervisor that dies (SIGKILL, a crash at start) and what it leaves: processes, files.

Every test runs with its own temporary folder (TMPDIR), so what is left there is what the
test's processes left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from tests.execution.conftest import new_project, supervisor_of, wait_until

from runyard import ScriptRunConfig, Workspace


@pytest.fixture
def project(tmp_path, monkeypatch):
    yield from new_project(tmp_path, monkeypatch, slots=2, own_temp=True)


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


TREE = """
import os, subprocess, sys, time
# a worker in its own session that ignores SIGTERM (a stubborn DataLoader worker)
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
worker = subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True)
# a grandchild whose parent exits at once: an orphan
spawn = (
    "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(600)'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(p.pid)"
)
orphan = int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True).stdout)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{os.getpid()} {worker.pid} {orphan}\\n{os.getcwd()}")
print("started", flush=True)
time.sleep(600)
"""


def test_killing_the_supervisor_ends_every_process_of_the_run(project, tmp_path):
    project.script("tree.py", TREE)
    info = tmp_path / "pids.txt"
    run = project.exp.submit(ScriptRunConfig(str(project.root), "tree.py", [str(info)]))
    wait_until(lambda: "started" in project.log_text(run), timeout=30)
    first, folder = info.read_text().split("\n")
    pids = [int(p) for p in first.split()]
    assert all(_alive(p) for p in pids) and os.path.isdir(folder)
    supervisor_of(run.id).send_signal(signal.SIGKILL)
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=15)
    # the submitter sees its supervisor gone and fails the run at once (not after 120 s)
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "SupervisorDied"
    # the next supervisor sweeps the dead one's run folder
    project.script("quick.py", "print('quick')\n")
    quick = project.exp.submit(ScriptRunConfig(str(project.root), "quick.py"))
    assert quick.wait_for_completion()["status"] == "Completed"
    assert not os.path.exists(folder)


def test_a_completed_run_leaves_nothing_in_the_temporary_folder(project):
    project.script("hello.py", "print('hello')\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    wait_until(lambda: not _files_under(Path(tempfile.gettempdir())), timeout=10)
    assert "system_logs/supervisor-stderr.txt" not in run.get_file_names()  # it said nothing


BROKEN_PSUTIL = "raise ImportError('psutil is broken in this environment (a test)')\n"


def test_a_supervisor_that_dies_at_start_fails_its_run_with_its_stderr(project, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "psutil.py").write_text(BROKEN_PSUTIL)
    project.script("hello.py", "print('hello')\n")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(broken)  # only the processes started from here see it
    try:
        run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before
    deadline = time.monotonic() + 30  # the heartbeat rule alone would take 120 s
    while run.get_status() not in ("Failed", "Completed") and time.monotonic() < deadline:
        time.sleep(0.1)
    details = run.get_details()
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["code"] == "SupervisorDied"
    assert "psutil is broken in this environment" in error["message"]
    logs = run.get_details_with_logs()["logFiles"]
    assert "ImportError: psutil is broken" in logs["system_logs/supervisor-stderr.txt"]
    assert not _files_under(Path(tempfile.gettempdir()) / f"runyard-{os.getuid()}")


UPLOADER = """
import sys
from runyard import Experiment, Workspace
run = Experiment(Workspace(sys.argv[1]), "kills").start_logging(snapshot_directory=None)
print("uploading", flush=True)
run.upload_file("outputs/big.bin", sys.stdin.buffer)   # reads until stdin ends
"""

SNAPSHOTTER = """
import sys, time, zipfile
from runyard import Workspace
from runyard._snapshot import take_snapshot

class Stuck(zipfile.ZipFile):
    def close(self):
        super().close()
        print("zip written", flush=True)
        time.sleep(600)   # killed here, before the zip is stored and removed

zipfile.ZipFile = Stuck
ws = Workspace(sys.argv[1])
take_snapshot(sys.argv[2], ws._store, ws._artifacts)
"""


def test_files_of_killed_processes_are_swept(project, tmp_path):
    uri = project.ws.uri
    staging = Path(project.ws.artifacts_root) / ".staging"
    uploader = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, uri], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert uploader.stdout.readline() == b"uploading\n"
    uploader.stdin.write(b"x" * (4 << 20))
    uploader.stdin.flush()
    wait_until(lambda: sum(p.stat().st_size for p in staging.iterdir()) > 0, timeout=30)
    uploader.kill()
    uploader.wait()
    assert list(staging.iterdir())
    Workspace(uri)  # opening a workspace sweeps its staging folder
    assert not list(staging.iterdir())

    (project.root / "data.txt").write_text("some data\n")
    snapshotter = subprocess.Popen(
        [sys.executable, "-c", SNAPSHOTTER, uri, str(project.root)], stdout=subprocess.PIPE
    )
    assert snapshotter.stdout.readline() == b"zip written\n"
    snapshotter.kill()
    snapshotter.wait()
    temp = Path(tempfile.gettempdir())
    assert [p for p in _files_under(temp) if p.endswith(".zip")]
    project.script("hello.py", "print('hello')\n")  # a new supervisor sweeps the temp folder
    run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    wait_until(lambda: not _files_under(temp), timeout=10)


def test_a_suspended_supervisor_with_an_old_heartbeat_is_not_failed_on_its_machine(project):
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    wait_until(lambda: "up" in project.log_text(run), timeout=30)
    supervisor = supervisor_of(run.id)
    supervisor.suspend()  # as when a laptop sleeps: no heartbeats...
    try:
        project.ws._store.db.write(  # ...for two hours, by every clock
            lambda cur: cur.execute(
                "UPDATE runs SET heartbeat_at = heartbeat_at - 7200 WHERE id = ?", (run.id,)
            )
        )
        assert run.get_status() == "Running"
        assert [r.id for r in project.exp.get_runs(status="Running")] == [run.id]
    finally:
        supervisor.resume()
    run.cancel()
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Canceled"


def test_a_supervisor_stopped_with_sigterm_stops_the_script_and_fails_the_run(project, tmp_path):
    pid_file = tmp_path / "pid.txt"
    project.script(
        "sleepy.py",
        "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "print('up', flush=True)\ntime.sleep(600)\n",
    )
    run = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py", [str(pid_file)]))
    wait_until(lambda: "up" in project.log_text(run), timeout=30)
    supervisor_of(run.id).send_signal(signal.SIGTERM)
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "Terminated"
    assert not _alive(int(pid_file.read_text()))


PARENT = """
import sys, time
from runyard import Run, ScriptRunConfig
run = Run.get_context()
run.submit_child(ScriptRunConfig(".", "child.py"))
print("submitted", flush=True)
if sys.argv[1] == "stay":
    time.sleep(600)
"""

CHILD = """
import time
time.sleep(1)
print("child done")
"""


@pytest.mark.parametrize("parent_end", ["exits", "supervisor killed"])
def test_a_child_run_outlives_the_script_that_submitted_it(project, parent_end):
    """Parent and child runs are independent: the end of the parent's processes (normal,
    or its supervisor killed) stops none of its child runs, which were submitted from its
    script and so started inside its process tree."""
    project.script("parent.py", PARENT)
    project.script("child.py", CHILD)
    argument = "leave" if parent_end == "exits" else "stay"
    parent = project.exp.submit(ScriptRunConfig(str(project.root), "parent.py", [argument]))
    wait_until(lambda: "submitted" in project.log_text(parent), timeout=30)
    if parent_end == "supervisor killed":
        supervisor_of(parent.id).send_signal(signal.SIGKILL)
    expected = "Completed" if parent_end == "exits" else "Failed"
    assert (
        parent.wait_for_completion(wait_post_processing=True, raise_on_error=False)["status"]
        == expected
    )
    (child,) = parent.get_children()
    details = child.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert details["status"] == "Completed", details.get("error")
    assert "child done" in project.log_text(child)
