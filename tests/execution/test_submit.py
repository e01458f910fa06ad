"""Submitting a script: it runs in a copy of its folder, as the run, and is watched."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runyard import (
    ActivityFailedError,
    Environment,
    RunConfiguration,
    ScriptRunConfig,
    UserError,
)

from .conftest import wait_until

ECHO = """
import json, os, sys
from runyard import Run
run = Run.get_context()
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "run": run.id,
                  "files": sorted(os.listdir(".")), "SEED": os.environ.get("SEED")}))
run.log("answer", 42)
with open("outputs/result.txt", "w") as fh:
    fh.write("done")
run.complete()   # inside a submitted run this flushes; the status is the supervisor's
"""


def _echo(project, run):
    line = next(ln for ln in project.log_text(run).splitlines() if ln.startswith("{"))
    return json.loads(line)


def test_submit_returns_at_once_and_the_run_completes(project):
    project.script("echo.py", ECHO)
    project.script("helper.py", "X = 1\n")
    (project.root / "secret.txt").write_text("ignored")
    (project.root / ".runyardignore").write_text("secret.txt\n")
    os.symlink("/etc/hostname", project.root / "outside_link")
    config = ScriptRunConfig(
        source_directory=str(project.root), script="echo.py",
        arguments=["--alpha", 0.1, "two words", 'quote"d', "it's"],
    )  # fmt: skip
    run = project.exp.submit(config, tags={"try": 1})
    assert re.fullmatch(r"scripts_\d{10}_[0-9a-f]{8}", run.id)
    assert run.get_status() not in ("Completed", "Failed")
    details = run.wait_for_completion()
    assert details["status"] == "Completed", details
    echoed = _echo(project, run)
    assert echoed["argv"] == ["--alpha", "0.1", "two words", 'quote"d', "it's"]
    assert echoed["run"] == run.id
    assert echoed["cwd"] != str(project.root)
    assert "secret.txt" not in echoed["files"] and "outside_link" not in echoed["files"]
    assert "helper.py" in echoed["files"]
    assert run.get_metrics() == {"answer": 42}
    assert run.get_tags() == {"try": "1"}
    assert "outputs/result.txt" in run.get_file_names()
    assert project.supervisor_statuses(run) == [
        "Queued", "Preparing", "Starting", "Running", "Finalizing", "Completed",
    ]  # fmt: skip
    assert run.type == "azureml.scriptrun"


def test_details_of_a_script_run(project, tmp_path):
    project.script("echo.py", ECHO)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "echo.py"))
    details = run.wait_for_completion(wait_post_processing=True)
    assert details["target"] == "local"
    assert details["runDefinition"]["script"] == "echo.py"
    assert details["properties"]["ContentSnapshotId"] == run.get_snapshot_id()
    assert details["properties"]["_azureml.ComputeTargetType"] == "local"
    assert "user_logs/std_log.txt" in details["logFiles"]
    assert "system_logs/supervisor.txt" in details["logFiles"]
    written = run.get_all_logs(str(tmp_path / "logs-out"))
    assert str(tmp_path / "logs-out" / "user_logs" / "std_log.txt") in written
    assert (tmp_path / "logs-out" / "user_logs" / "std_log.txt").read_text().startswith("{")


def test_command_form_and_environment_variables(project):
    project.script("echo.py", ECHO)
    rc = RunConfiguration()
    rc.environment_variables["SEED"] = "7"
    config = ScriptRunConfig(
        str(project.root), command=["python", "echo.py", "--flag"], run_config=rc
    )
    run = project.exp.submit(config)
    assert run.wait_for_completion()["status"] == "Completed"
    echoed = _echo(project, run)
    assert echoed["argv"] == ["--flag"] and echoed["SEED"] == "7"


def test_a_failing_script_fails_the_run_with_exit_code_and_stderr(project):
    project.script(
        "bad.py",
        """
        import sys
        print("working")
        print("something broke: tensor shape mismatch", file=sys.stderr)
        sys.exit(3)
        """,
    )
    run = project.exp.submit(ScriptRunConfig(str(project.root), "bad.py"))
    with pytest.raises(ActivityFailedError) as info:
        run.wait_for_completion()
    assert "exit code 3" in info.value.error_details
    assert "tensor shape mismatch" in info.value.error_details
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["code"] == "ScriptFailed" and "tensor shape mismatch" in error["message"]


def test_output_streams_live_and_logs_upload_while_running(project, capsys):
    project.script(
        "slow.py",
        """
        import os, time
        os.makedirs("logs", exist_ok=True)
        print("first line", flush=True)
        with open("logs/progress.txt", "w") as fh:
            fh.write("half way")
        time.sleep(4)
        print("last line")
        """,
    )
    run = project.exp.submit(ScriptRunConfig(str(project.root), "slow.py"))
    wait_until(lambda: "first line" in project.log_text(run), timeout=20)
    assert run.get_status() == "Running"
    wait_until(lambda: "logs/progress.txt" in run.get_file_names(), timeout=10)
    assert run.get_status() == "Running"
    run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    assert out.index("first line") < out.index("last line") < out.index("Execution Summary")
    assert f"RunId: {run.id}" in out


def test_new_lines_reach_the_watcher_quickly(project, capsys):
    project.script(
        "ticker.py",
        """
        import time
        for i in range(3):
            print(f"tick {i} {time.time()}")
            time.sleep(0.6)
        """,
    )
    run = project.exp.submit(ScriptRunConfig(str(project.root), "ticker.py"))
    seen: dict[str, float] = {}

    class Recorder:
        def write(self, text):
            for line in text.splitlines():
                if line.startswith("tick"):
                    seen[line] = time.time()
            return len(text)

        def flush(self):
            pass

    real = sys.stdout
    sys.stdout = Recorder()
    try:
        run.wait_for_completion(show_output=True)
    finally:
        sys.stdout = real
    assert len(seen) == 3
    delays = [arrived - float(line.split()[2]) for line, arrived in seen.items()]
    assert max(delays) < 0.5, delays


def test_odd_output_and_a_script_that_never_asks_for_its_run(project):
    project.script(
        "raw.py",
        """
        import sys
        sys.stdout.buffer.write(b"bytes \\xff\\xfe not utf-8\\n")
        print("plain text")
        """,
    )
    run = project.exp.submit(ScriptRunConfig(str(project.root), "raw.py"))
    assert run.wait_for_completion(show_output=True)["status"] == "Completed"
    raw = Path(project.ws._artifacts.local_path(run.id, "user_logs/std_log.txt")).read_bytes()
    assert b"\xff\xfe not utf-8" in raw and b"plain text" in raw


def test_bad_submissions_change_nothing(project):
    project.script("ok.py", "print(1)\n")
    with pytest.raises(UserError, match="does not exist"):
        project.exp.submit(ScriptRunConfig(str(project.root), "missing.py"))
    env = Environment("broken")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = "/no/such/python"
    with pytest.raises(UserError, match="interpreter"):
        project.exp.submit(ScriptRunConfig(str(project.root), "ok.py", environment=env))
    with pytest.raises(UserError, match="not a folder"):
        project.exp.submit(ScriptRunConfig(str(project.root / "nope"), "ok.py"))
    with pytest.raises(UserError, match="either command"):
        ScriptRunConfig(str(project.root), "ok.py", command=["python", "ok.py"])
    with pytest.raises(UserError, match="specify the script"):
        project.exp.submit(ScriptRunConfig(str(project.root)))
    assert list(project.exp.get_runs()) == []


def test_the_run_finishes_after_the_submitter_exits(project):
    project.script(
        "later.py",
        """
        import time
        time.sleep(1.5)
        print("still here after the submitter left")
        """,
    )
    code = (
        "import sys; from runyard import Workspace, Experiment, ScriptRunConfig; "
        f"ws = Workspace({str(project.ws.uri)!r}); "
        f"run = Experiment(ws, 'scripts').submit(ScriptRunConfig({str(project.root)!r}, "
        "'later.py')); print(run.id)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    run = project.ws.get_run(done.stdout.strip())
    assert run.wait_for_completion()["status"] == "Completed"
    assert "still here after the submitter left" in project.log_text(run)


def test_max_run_duration_stops_and_fails_the_run(project):
    project.script("forever.py", "import time\nwhile True:\n    time.sleep(0.1)\n")
    config = ScriptRunConfig(str(project.root), "forever.py", max_run_duration_seconds=1)
    run = project.exp.submit(config)
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "RunTimeLimitExceeded"
    assert "max_run_duration_seconds=1" in details["error"]["error"]["message"]


def test_a_source_folder_over_the_snapshot_limit_is_refused(project):
    from runyard import SnapshotError
    from runyard._snapshot import MAX_FILES

    project.script("ok.py", "print(1)\n")
    data = project.root / "data"
    data.mkdir()
    for i in range(MAX_FILES + 1):
        (data / f"{i}.csv").write_text("1\n")
    with pytest.raises(SnapshotError, match="runyardignore"):
        project.exp.submit(ScriptRunConfig(str(project.root), "ok.py"))
    assert list(project.exp.get_runs()) == []
    (project.root / ".runyardignore").write_text("data/\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "ok.py"))
    assert run.wait_for_completion()["status"] == "Completed"


def test_a_supervisor_that_cannot_start_fails_the_run_instead_of_holding_the_queue(
    project, monkeypatch
):
    from runyard import ExperimentExecutionError

    env = Environment("mine")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    project.script("hello.py", "print('hi')\n")
    monkeypatch.setattr(sys, "executable", str(project.root / "no-such-python"))
    with pytest.raises(ExperimentExecutionError, match="could not start the run's supervisor"):
        project.exp.submit(ScriptRunConfig(str(project.root), "hello.py", environment=env))
    monkeypatch.undo()
    (run,) = project.exp.get_runs()
    assert run.get_status() == "Failed"
    assert run.get_details()["error"]["error"]["code"] == "SupervisorNotStarted"


def test_a_bad_liveness_setting_is_a_clear_error_for_readers_and_supervisors(project, monkeypatch):
    """A supervisor's heartbeat thread used to die of it silently: the run went on unwatched."""
    project.script("hello.py", "print('hello')\n")
    monkeypatch.setenv("RUNYARD_HEARTBEAT_SECONDS", "0")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    monkeypatch.delenv("RUNYARD_HEARTBEAT_SECONDS")  # the supervisor has it
    details = run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert details["status"] == "Failed"
    message = details["error"]["error"]["message"]
    assert "RUNYARD_HEARTBEAT_SECONDS='0' is not a positive number" in message
    monkeypatch.setenv("RUNYARD_CANCEL_GRACE_SECONDS", "a while")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"))
    details = run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    message = details["error"]["error"]["message"]
    assert "RUNYARD_CANCEL_GRACE_SECONDS='a while' is not a number" in message
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "soon")
    with pytest.raises(UserError, match="RUNYARD_NOT_RESPONDING_SECONDS='soon'"):
        list(project.exp.get_runs())


def test_a_script_run_takes_the_longest_valid_run_id(project):
    """The supervisor's files are named after the run; a 255-character id must fit."""
    project.script("hello.py", "print('hello')\n")
    run_id = "r" * 255
    run = project.exp.submit(ScriptRunConfig(str(project.root), "hello.py"), run_id=run_id)
    assert run.id == run_id
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    assert "hello" in project.log_text(run)


def test_a_script_waiting_for_its_own_run_is_told_at_once(project):
    """Its run cannot finish while the script waits for it: the wait would never end."""
    project.script(
        "myself.py",
        "from runyard import Run\nRun.get_context().wait_for_completion()\n",
    )
    config = ScriptRunConfig(str(project.root), "myself.py", max_run_duration_seconds=10)
    run = project.exp.submit(config)  # the limit ends a wait that never returns
    details = run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    assert details["status"] == "Failed"
    assert "cannot finish while the script waits for it" in details["error"]["error"]["message"]


def test_a_script_whose_last_points_cannot_be_stored_is_not_completed(project):
    """Exit code 0, but the flush at interpreter exit was refused: the run is Failed."""
    project.script(
        "lossy.py",
        """
        from runyard import Run
        run = Run.get_context()
        other = run.experiment.workspace.get_run(run.id)
        other.log("warm", 1.0)   # this handle now knows the run's series: x is not one
        run.log_list("x", [1, 2])
        run.flush()
        other.log("x", 3.0)      # a scalar under a list's name: refused at exit
        """,
    )
    run = project.exp.submit(ScriptRunConfig(str(project.root), "lossy.py"))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "RunDataNotStored"
    assert "could not be stored" in details["error"]["error"]["message"]


def test_a_long_unicode_experiment_name_still_makes_a_valid_run_id(project):
    from runyard import Experiment

    exp = Experiment(project.ws, "a" + "é" * 200)
    project.script("ok.py", "print('ok')\n")
    run = exp.submit(ScriptRunConfig(str(project.root), "ok.py"))
    assert len(run.id.encode()) <= 255
    assert run.wait_for_completion()["status"] == "Completed"
