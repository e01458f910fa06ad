from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from runyard import Experiment, OfflineRun, Run, RunEnvironmentError


def test_offline_run_prints_what_it_would_record(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("RUNYARD_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(OfflineRun, "_singleton", None)
    (tmp_path / "m.pkl").write_bytes(b"model")
    run = Run.get_context()
    assert isinstance(run, OfflineRun) and run.id.startswith("OfflineRun_")
    with pytest.warns(RuntimeWarning, match="already Failed"), run:  # fail() inside the block
        run.log("loss", 0.5)
        run.log_list("accs", [1, 2])
        run.tag("k", "v")
        run.set_tags({"a": "b"})
        run.add_properties({"p": "1"})
        run.upload_file("outputs/m.pkl", "m.pkl")
        run.flush()
        run.fail("boom", error_code="E1")
        child = run.child_run("kid")
    out = capsys.readouterr().out
    for expected in (
        f"[START] Run {run.id} context",
        "Attempted to log scalar metric loss:\n0.5",
        "Attempted to log list metric accs:\n[1, 2]",
        "Attempted to add tag k with value v",
        "Attempted to set tags {'a': 'b'}",
        "Attempted to add properties {'p': '1'}",
        "Attempted to track file outputs/m.pkl at m.pkl",
        f"Attempted to flush run with id {run.id}",
        "Run failed with error code E1:\nboom",
        f"[STOP] Run {run.id} context",
    ):
        assert expected in out
    assert child.id == f"{run.id}.kid"
    run.log("loss", 1, step=2)  # the original's offline run has no step: a TypeError there
    assert run.get_metric_history("loss").steps == [0, 2]


def test_allow_offline_false_raises(monkeypatch):
    monkeypatch.delenv("RUNYARD_RUN_ID", raising=False)
    with pytest.raises(RunEnvironmentError, match="start_logging"):
        Run.get_context(allow_offline=False)


SCRIPT = textwrap.dedent(
    """
    from runyard import Run
    run = Run.get_context(allow_offline=False)
    assert run is Run.get_context()
    for i in range(100):
        run.log("loss", 1.0 / (i + 1), step=i)
    run.tag("seen", "yes")
    with open("outputs/model.txt", "w") as fh:
        fh.write("model")
    run.complete()   # flushes and collects outputs; the status belongs to the submitter
    print("RUN", run.id, run.experiment.name, run.get_status())
    """
)


def test_get_context_returns_the_run_named_by_the_environment(ws, tmp_path):
    exp = Experiment(ws, "submitted")
    run = exp.start_logging(snapshot_directory=None, outputs=False)
    work = tmp_path / "job"
    (work / "outputs").mkdir(parents=True)
    env = dict(
        os.environ,
        RUNYARD_URI=ws.uri,
        RUNYARD_ARTIFACTS=ws.artifacts_root,
        RUNYARD_RUN_ID=run.id,
        RUNYARD_OUTPUT_DIRECTORY="outputs",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"RUN {run.id} submitted Running" in done.stdout
    assert run.get_status() == "Running"
    metrics = run.get_metrics()
    assert len(metrics["loss"]) == 100
    assert run.get_tags() == {"seen": "yes"}
    assert run.get_file_names() == ["outputs/model.txt"]


def test_get_context_never_creates_the_workspace_the_environment_names(monkeypatch, tmp_path):
    from runyard.errors import NotFound

    missing = tmp_path / "typo"
    monkeypatch.setenv("RUNYARD_URI", str(missing))
    monkeypatch.setenv("RUNYARD_RUN_ID", "abc")
    monkeypatch.setattr(Run, "_context_singleton", None)
    with pytest.raises(NotFound, match="no runyard workspace"):
        Run.get_context()
    assert not missing.exists()
