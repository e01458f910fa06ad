"""Many processes logging into one workspace at once: nothing lost, no lock errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from runyard import Experiment, Workspace

PROCESSES = 8
POINTS = 50_000

WRITER = textwrap.dedent(
    """
    import sys, time
    from runyard import Workspace, Experiment
    uri, artifacts, index = sys.argv[1], sys.argv[2] or None, sys.argv[4]
    start_at = float(sys.argv[3])
    ws = Workspace(uri, artifacts=artifacts)
    exp = Experiment(ws, "crowd")
    while time.time() < start_at:
        time.sleep(0.001)
    run = exp.start_logging(snapshot_directory=None, outputs=False, tags={"writer": index})
    for i in range({points}):
        run.log("loss", i * 0.5, step=i)
        if i % 5000 == 4999:
            run.flush()   # flushes from the main thread race the background flusher
    run.complete()
    print("done", run.id)
    """
).replace("{points}", str(POINTS))


def _crowd(uri: str, artifacts: str | None, tmp_path) -> None:
    Workspace(uri, artifacts=artifacts)  # create the schema once, like a real first use
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, uri, artifacts or "", str(start_at), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for i in range(PROCESSES)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err, err
        assert out.startswith("done")
    ws = Workspace(uri, artifacts=artifacts)
    runs = list(Experiment(ws, "crowd").get_runs())
    assert len(runs) == PROCESSES
    assert sorted(r.number for r in runs) == list(range(1, PROCESSES + 1))
    total = 0
    for run in runs:
        assert run.get_status() == "Completed"
        history = run.get_metric_history("loss")
        assert history.steps == list(range(POINTS))
        assert history.values == [i * 0.5 for i in range(POINTS)]
        total += len(history.values)
    assert total == PROCESSES * POINTS


def test_eight_processes_into_one_sqlite_workspace(tmp_path):
    _crowd(str(tmp_path / "ws"), None, tmp_path)


def test_eight_processes_into_one_postgres_workspace(pg_uri, tmp_path):
    _crowd(pg_uri, str(tmp_path / "artifacts"), tmp_path)


def test_many_processes_creating_the_same_new_workspace(tmp_path):
    script = (
        "import sys; from runyard import Workspace, Experiment; "
        "ws = Workspace(sys.argv[1]); Experiment(ws, 'same')."
        "start_logging(snapshot_directory=None, outputs=False).complete()"
    )
    uri = str(tmp_path / "fresh")
    procs = [
        subprocess.Popen([sys.executable, "-c", script, uri], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    ws = Workspace(uri)
    assert list(ws.experiments) == ["same"]
    assert sorted(r.number for r in Experiment(ws, "same").get_runs()) == [1, 2, 3, 4, 5, 6]
    assert os.path.isfile(os.path.join(uri, "runyard.db"))
