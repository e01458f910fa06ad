"""SIGKILL at any moment of a run's life leaves no half-written state.

A child process loops through a run's whole life (snapshot, create, log, upload, outputs,
complete) and is killed at a different moment each time. Afterwards the workspace must
hold only whole things: every listed file has its bytes, every series' summary matches its
chunks, every Completed run holds its outputs, every snapshot record has its zip, and the
staging leftovers of the dead processes are swept when the workspace is opened again.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from runyard import Workspace

LIFE = textwrap.dedent(
    """
    import os, sys
    from runyard import Workspace, Experiment
    ws = Workspace(sys.argv[1], artifacts=sys.argv[2])
    exp = Experiment(ws, "killed")
    os.makedirs("src", exist_ok=True)
    i = 0
    while True:
        with open("src/train.py", "w") as fh:
            fh.write(f"# version {i}\\n" + "x = 1\\n" * 2000)
        run = exp.start_logging(snapshot_directory="src", outputs="out")
        for step in range(2000):
            run.log("loss", step * 0.5, step=step)
            if step % 500 == 0:
                run.flush()
        run.upload_file(f"blob_{i}.bin", sys.argv[3])
        with open("out/model.bin", "wb") as fh:
            fh.write(os.urandom(200_000))
        run.complete()
        print(i, flush=True)
        i += 1
    """
)


def _digest(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sigkill_at_any_moment_leaves_only_whole_things(database, tmp_path, request):
    uri = str(tmp_path / "ws") if database == "sqlite" else request.getfixturevalue("pg_uri")
    artifacts = str(tmp_path / "artifacts")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3_000_000))
    Workspace(uri, artifacts=artifacts)._store.close()  # created once, before the kills
    rng = random.Random(7)
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", LIFE, uri, artifacts, str(blob)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    ws = Workspace(uri, artifacts=artifacts)
    store, db = ws._store, ws._store.db
    runs = db.read("SELECT id, status FROM runs")
    statuses = [status for _, status in runs]
    assert "Completed" in statuses and "Running" in statuses  # killed both before and after
    for run_id, status in runs:
        names = set()
        for record in store.list_artifacts(run_id):
            names.add(record.path)
            local = ws._artifacts.local_path(run_id, record.path)
            assert local and os.path.exists(local), f"{record.path} of {run_id} has no bytes"
            if not record.streaming:
                assert _digest(local) == record.digest
        if status == "Completed":
            assert "outputs/model.bin" in names
    for name, count, chunk_total in db.read(
        "SELECT s.name, s.count, (SELECT SUM(c.count) FROM metric_chunks c "
        "WHERE c.run_id = s.run_id AND c.name = s.name) FROM metric_series s"
    ):
        assert count == chunk_total, f"series {name}: summary {count}, chunks {chunk_total}"
    for (snapshot_id,) in db.read("SELECT id FROM snapshots"):
        assert os.path.exists(os.path.join(artifacts, "snapshots", f"{snapshot_id}.zip"))
    assert os.listdir(os.path.join(artifacts, ".staging")) == []
    store.close()
