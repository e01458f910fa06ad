"""What a run keeps when its process ends: SIGKILL, SIGTERM, an exception, a normal exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from runyard import Workspace
from runyard._logging_buffer import FLUSH_INTERVAL

LOGGER = textwrap.dedent(
    """
    import sys, time
    from runyard import Workspace, Experiment
    ws = Workspace(sys.argv[1])
    mode = sys.argv[2]
    run = Experiment(ws, "ending").start_logging(snapshot_directory=None, outputs=False)
    print(run.id, flush=True)
    progress = open(sys.argv[3], "w", buffering=1)
    i = 0
    while True:
        run.log("tick", float(i), step=i)
        if i % 100 == 99:
            progress.write(f"{i} {time.time()}\\n")   # everything up to i is logged
            if mode == "raise" and i >= 2999:
                raise RuntimeError("model diverged")
            if mode == "exit" and i >= 2999:
                sys.exit(0)
            time.sleep(0.005)
        i += 1
    """
)


def _start(tmp_path, mode):
    uri = str(tmp_path / "ws")
    progress = tmp_path / "progress.txt"
    proc = subprocess.Popen(
        [sys.executable, "-c", LOGGER, uri, mode, str(progress)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = proc.stdout.readline().strip()
    return uri, run_id, proc, progress


def _progress(progress):
    lines = progress.read_text().split("\n")
    return [(int(a), float(b)) for a, b in (line.split() for line in lines if line)]


def _stored(uri, run_id):
    run = Workspace(uri).get_run(run_id)
    return run, run.get_metric_history("tick").steps


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path):
    uri, run_id, proc, progress = _start(tmp_path, "forever")
    time.sleep(2.5)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _, steps = _stored(uri, run_id)
    assert steps == list(range(len(steps)))  # a prefix, no holes, no duplicates
    # every point logged more than one flush interval (plus the write's own time)
    # before the kill is durable
    safe = [i for i, t in _progress(progress) if t < killed_at - FLUSH_INTERVAL - 0.25]
    assert safe, "the logger made no progress"
    assert len(steps) >= safe[-1] + 1


def test_sigterm_keeps_everything_and_fails_the_run(tmp_path):
    uri, run_id, proc, progress = _start(tmp_path, "forever")
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    run, steps = _stored(uri, run_id)
    assert len(steps) >= _progress(progress)[-1][0] + 1
    assert steps == list(range(len(steps)))
    assert run.get_status() == "Failed"
    assert "SIGTERM" in run.get_details()["error"]["error"]["message"]


def test_uncaught_exception_keeps_everything_and_fails_the_run(tmp_path):
    uri, run_id, proc, _ = _start(tmp_path, "raise")
    _, err = proc.communicate(timeout=60)
    assert "model diverged" in err
    run, steps = _stored(uri, run_id)
    assert steps == list(range(3000))
    error = run.get_details()["error"]["error"]
    assert error["message"] == "User program failed with RuntimeError: model diverged"


def test_normal_exit_keeps_everything_and_completes(tmp_path):
    uri, run_id, proc, _ = _start(tmp_path, "exit")
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    run, steps = _stored(uri, run_id)
    assert steps == list(range(3000))
    assert run.get_status() == "Completed"
    assert os.path.exists(os.path.join(uri, "runyard.db"))


IN_JOB = textwrap.dedent(
    """
    import sys, time
    from runyard import Run
    run = Run.get_context(allow_offline=False)
    progress = open(sys.argv[1], "w", buffering=1)
    i = 0
    while True:
        run.log("tick", float(i), step=i)
        if i % 100 == 99:
            progress.write(f"{i} {time.time()}\\n")
            time.sleep(0.005)
        i += 1
    """
)


def test_sigterm_in_a_submitted_run_keeps_everything_and_leaves_the_status(tmp_path):
    from runyard import Experiment

    ws = Workspace(str(tmp_path / "ws"))
    run = Experiment(ws, "job").start_logging(snapshot_directory=None, outputs=False)
    progress = tmp_path / "progress.txt"
    env = dict(os.environ, RUNYARD_URI=ws.uri, RUNYARD_RUN_ID=run.id)
    proc = subprocess.Popen([sys.executable, "-c", IN_JOB, str(progress)], env=env)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    steps = run.get_metric_history("tick").steps
    assert len(steps) >= _progress(progress)[-1][0] + 1
    assert steps == list(range(len(steps)))
    assert run.get_status() == "Running"  # the submitter owns a submitted run's status


def test_a_forked_child_does_not_write_its_parents_pending_points_again(tmp_path):
    from runyard import Experiment

    ws = Workspace(str(tmp_path / "ws"))
    run = Experiment(ws, "fork").start_logging(snapshot_directory=None, outputs=False)
    for i in range(10):
        run.log("shared", float(i), step=i)
    pid = os.fork()
    if pid == 0:  # the child logs its own points, flushes and leaves at once
        code = 0
        try:
            for i in range(10, 15):
                run.log("shared", float(i), step=i)
            run.flush()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    run.flush()
    assert sorted(run.get_metric_history("shared").steps) == list(range(15))
