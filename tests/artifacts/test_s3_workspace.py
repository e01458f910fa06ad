"""Workspaces used without a server whose files are in a bucket: PostgreSQL (and SQLite)
with ``artifacts="s3://..."``, through the SDK, the config, the environment and the CLI;
a script run through the real local supervisor."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from runyard import Experiment, ScriptRunConfig, Workspace
from tests.execution.conftest import Project, wait_until


def _objects(server, root: str, under: str = "") -> list[str]:
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    found = server.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{under}")
    return sorted(item["Key"][len(prefix) + 1 :] for item in found.get("Contents", []))


def test_postgres_workspace_with_s3_files(pg_uri, s3_root, s3_server, tmp_path):
    ws = Workspace(pg_uri, artifacts=s3_root)
    assert ws.artifacts_root == s3_root
    exp = Experiment(ws, "s3")
    run = exp.start_logging()
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(100_000))
    run.upload_file("outputs/model.bin", str(model))
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    run.upload_folder("plots", str(folder))
    run.log("loss", 0.5)
    run.complete()
    assert run.get_file_names() == ["outputs/model.bin", "plots/a.txt", "plots/sub/b.txt"]
    assert _objects(s3_server, s3_root, f"runs/{run.id}/") == [
        f"runs/{run.id}/outputs/model.bin",
        f"runs/{run.id}/plots/a.txt",
        f"runs/{run.id}/plots/sub/b.txt",
    ]
    got = tmp_path / "got.bin"
    run.download_file("outputs/model.bin", str(got))
    assert got.read_bytes() == model.read_bytes()
    run.download_files(prefix="plots", output_directory=str(tmp_path / "down"))
    assert (tmp_path / "down" / "plots" / "sub" / "b.txt").read_text() == "b"
    assert ws._artifacts.url(run.id, "plots/a.txt") == f"{s3_root}/runs/{run.id}/plots/a.txt"
    # another process on another machine would open the same workspace the same way
    again = Workspace(pg_uri, artifacts=s3_root).get_run(run.id)
    assert again.get_metrics() == {"loss": 0.5}
    ws._store.close()


def test_with_block_output_is_captured_into_the_bucket(pg_uri, s3_root):
    ws = Workspace(pg_uri, artifacts=s3_root)
    with Experiment(ws, "capture").start_logging(outputs=None, snapshot_directory=None) as run:
        print("hello from the block")
    names = run.get_file_names()
    log = [n for n in names if n.endswith("user_log.txt")]
    assert log, names
    record = ws._store.get_artifact(run.id, log[0])
    with ws._artifacts.open(run.id, log[0]) as fh:
        data = fh.read()
    assert b"hello from the block" in data
    assert (record.size, record.digest) == (len(data), hashlib.sha256(data).hexdigest())


def test_config_env_and_cli_name_the_bucket(pg_uri, s3_root, s3_server, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    ws = Workspace(pg_uri, artifacts=s3_root)
    with open(ws.write_config(str(project))) as fh:
        config = json.load(fh)
    assert config["artifacts"] == s3_root  # kept as the URL, never made a path
    monkeypatch.chdir(project)
    monkeypatch.delenv("RUNYARD_ARTIFACTS", raising=False)
    monkeypatch.delenv("RUNYARD_URI", raising=False)
    assert Workspace.from_config().artifacts_root == s3_root
    monkeypatch.setenv("RUNYARD_URI", pg_uri)
    monkeypatch.setenv("RUNYARD_ARTIFACTS", s3_root)
    assert Workspace.from_config(str(tmp_path)).artifacts_root == s3_root
    monkeypatch.delenv("RUNYARD_URI")
    monkeypatch.delenv("RUNYARD_ARTIFACTS")
    run = Experiment(ws, "cli").start_logging(snapshot_directory=None)
    run.upload_file("outputs/f.txt", __file__)
    run.complete()
    runyard = os.path.join(os.path.dirname(sys.executable), "runyard")
    got = tmp_path / "got"
    where = ["--workspace", pg_uri, "--artifacts", s3_root]
    made = subprocess.run(
        [runyard, *where, "run", "download", "-r", run.id, "--prefix", "outputs", "-d", str(got)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    assert [p.name for p in got.rglob("f.txt")] == ["f.txt"]
    wrong = subprocess.run(
        [runyard, "--workspace", pg_uri, "--artifacts", "s3://no-such-bucket-x/p", "run", "list"],
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0
    assert "bucket 'no-such-bucket-x' does not exist" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_sqlite_workspace_with_s3_files(tmp_path, s3_root, s3_server):
    ws = Workspace(str(tmp_path / "ws"), artifacts=s3_root)
    run = Experiment(ws, "local-db").start_logging(snapshot_directory=None)
    run.upload_file("outputs/x.txt", __file__)
    run.complete()
    assert f"runs/{run.id}/outputs/x.txt" in _objects(s3_server, s3_root)
    assert not (tmp_path / "ws" / "artifacts" / "runs").exists()


@pytest.mark.slow
def test_script_run_streams_its_log_and_outputs_into_the_bucket(
    pg_uri, s3_root, s3_server, tmp_path, monkeypatch
):
    """The real local supervisor: the snapshot comes from the bucket, the log grows there
    while the script runs (a reader sees it grow), the outputs land there."""
    monkeypatch.setenv("RUNYARD_MAX_CONCURRENT_RUNS", "2")
    ws = Workspace(pg_uri, artifacts=s3_root)
    root = tmp_path / "project"
    root.mkdir()
    project = Project(root, ws)
    project.script(
        "train.py",
        """
        import time
        from runyard import Run
        run = Run.get_context()
        for i in range(6):
            print(f"epoch {i}", flush=True)
            run.log("loss", 1.0 / (i + 1))
            time.sleep(0.5)
        open("outputs/model.txt", "w").write("weights")
        """,
    )
    run = project.exp.submit(ScriptRunConfig(str(root), "train.py"))
    wait_until(lambda: "epoch 1" in project.log_text(run), timeout=60, every=0.2)
    seen_while_running = project.log_text(run)
    assert run.get_status() in ("Running", "Finalizing", "Completed")
    assert "epoch 5" not in seen_while_running  # read while the script went on
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    assert "epoch 5" in project.log_text(run)
    assert len(run.get_metrics()["loss"]) == 6
    snapshot = run.get_snapshot_id()
    assert f"snapshots/{snapshot}.zip" in _objects(s3_server, s3_root, "snapshots/")
    stored = _objects(s3_server, s3_root, f"runs/{run.id}/")
    for name in ("outputs/model.txt", "user_logs/std_log.txt", "system_logs/supervisor.txt"):
        assert f"runs/{run.id}/{name}" in stored
    record = ws._store.get_artifact(run.id, "user_logs/std_log.txt")
    text = project.log_text(run).encode()
    assert (record.size, record.digest) == (len(text), hashlib.sha256(text).hexdigest())
    assert _objects(s3_server, s3_root, ".staging/") == []
