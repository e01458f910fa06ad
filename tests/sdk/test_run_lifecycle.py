from __future__ import annotations

import os
import re
import sys

import pytest

from runyard import Experiment, Run, UserError

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,6}Z$")


@pytest.fixture
def exp(ws):
    return Experiment(ws, "life")


def test_start_logging_details_and_complete(exp, tmp_path):
    run = exp.start_logging(display_name="first", description="about it", tags={"k": "v"})
    assert run.get_status() == "Running" and run.number == 1
    details = run.get_details()
    assert set(details) == {
        "runId",
        "target",
        "status",
        "startTimeUtc",
        "services",
        "properties",
        "inputDatasets",
        "outputDatasets",
        "logFiles",
        "submittedBy",
    }
    assert details["target"] == "local" and TIME.match(details["startTimeUtc"])
    assert "ContentSnapshotId" in details["properties"]
    assert (tmp_path / "work" / "outputs").is_dir()
    run.complete()
    details = run.get_details()
    assert details["status"] == "Completed" and TIME.match(details["endTimeUtc"])
    again = Run(exp, run.id)
    assert (again.display_name, again.description, again.tags) == ("first", "about it", {"k": "v"})
    assert exp.start_logging(snapshot_directory=None).number == 2


def test_display_name_and_description_setters_persist(exp):
    run = exp.start_logging(snapshot_directory=None)
    run.display_name = "renamed"
    run.description = "text"
    fetched = Run.get(exp.workspace, run.id)
    assert (fetched.display_name, fetched.description) == ("renamed", "text")
    with pytest.raises(UserError, match="256"):
        run.display_name = "x" * 300


def test_fail_records_the_error(exp):
    run = exp.start_logging(snapshot_directory=None)
    try:
        raise ValueError("bad input")
    except ValueError as exc:
        run.fail(exc)
    details = run.get_details()
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["message"] == "User program failed with ValueError: bad input"
    assert error["code"] == "UserError" and "bad input" in error["debugInfo"]["stackTrace"]
    other = exp.start_logging(snapshot_directory=None)
    other.fail("plain words", error_code="DataError")
    assert other.get_details()["error"]["error"] == {"code": "DataError", "message": "plain words"}
    with pytest.raises(TypeError, match="error_details must be"):
        exp.start_logging(snapshot_directory=None).fail(42)  # type: ignore[arg-type]


def test_terminal_statuses_never_change(exp):
    run = exp.start_logging(snapshot_directory=None)
    run.cancel()
    assert run.get_status() == "Canceled"
    with pytest.warns(RuntimeWarning, match="already Canceled"):
        run.complete()
    assert Run(exp, run.id).get_status() == "Canceled"
    assert run.get_detailed_status() == {"status": "Canceled", "details": None}


def test_run_constructor_checks_the_experiment(ws, exp):
    run = exp.start_logging(snapshot_directory=None)
    with pytest.raises(UserError, match="belongs to experiment 'life'"):
        Run(Experiment(ws, "other"), run.id)


def test_with_block_completes_and_keeps_the_printed_log(exp, capsys):
    with exp.start_logging(snapshot_directory=None) as run:
        print("hello from the run")
        print("to stderr", file=sys.stderr)
    assert run.get_status() == "Completed"
    assert "hello from the run" in capsys.readouterr().out
    assert "logs/user_log.txt" in run.get_file_names()
    assert "logs/user_log.txt" in run.get_details()["logFiles"]
    text = run.get_details_with_logs()["logFiles"]["logs/user_log.txt"]
    assert "hello from the run" in text and "to stderr" in text
    assert not os.path.exists("logs")  # the capture is the run's own file, not ./logs


def test_with_block_fails_on_exception_and_reraises(exp):
    with pytest.raises(KeyError), exp.start_logging(snapshot_directory=None) as run:
        raise KeyError("missing")
    details = run.get_details()
    assert details["status"] == "Failed"
    assert details["error"]["error"]["message"] == "User program failed with KeyError: 'missing'"
    assert "KeyError" in run.get_details_with_logs()["logFiles"]["logs/user_log.txt"]


def test_clean_sys_exit_completes_and_nonzero_fails(exp):
    with pytest.raises(SystemExit), exp.start_logging(snapshot_directory=None) as ok:
        sys.exit(0)
    assert ok.get_status() == "Completed"
    with pytest.raises(SystemExit), exp.start_logging(snapshot_directory=None) as bad:
        sys.exit(3)
    assert bad.get_status() == "Failed"


def test_outputs_are_collected_at_completion(exp, tmp_path):
    run = exp.start_logging(snapshot_directory=None)
    (tmp_path / "work" / "outputs" / "sub").mkdir(parents=True)
    (tmp_path / "work" / "outputs" / "model.txt").write_text("weights")
    (tmp_path / "work" / "outputs" / "sub" / "more.txt").write_text("more")
    run.upload_file("outputs/model.txt", "outputs/model.txt")  # the usual sample pattern
    run.complete()
    assert run.get_file_names() == ["outputs/model.txt", "outputs/sub/more.txt"]
    no_outputs = exp.start_logging(snapshot_directory=None, outputs=False)
    no_outputs.complete()
    assert no_outputs.get_file_names() == []


def test_repr_and_name(exp):
    run = exp.start_logging(snapshot_directory=None)
    assert repr(run).startswith("Run(Experiment: life,\nId: ")
    assert run.name == f"run_{run.id}"
    assert run.parent is None


def test_details_with_logs_hold_the_text(exp):
    with exp.start_logging(snapshot_directory=None) as run:
        print("a line for the log")
    details = run.get_details_with_logs()
    assert "a line for the log" in details["logFiles"]["logs/user_log.txt"]
