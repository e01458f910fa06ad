"""Artifact record and bytes are stored together or not at all.

Name clashes (a file and a folder of the same name), names too long for the filesystem,
a planted file in the way, two writers racing for one name, a deleted or full artifact
folder: each fails with one clear error, leaves no record without bytes, and never makes
a run Completed with files missing.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import threading

import pytest
from tests.conftest import needs_local

from runyard import Experiment, Workspace
from runyard.errors import Conflict, StoreError, UserError


@pytest.fixture
def run(ws):
    run = Experiment(ws, "files").start_logging(snapshot_directory=None, outputs=False)
    yield run


def _bytes(text="x"):
    return io.BytesIO(text.encode())


@pytest.mark.parametrize(
    "first, second", [("a", "a/b"), ("x/y", "x"), ("p/q/r", "p/q"), ("p/q", "p/q/r/s")]
)
def test_a_name_cannot_be_both_a_file_and_a_folder(run, first, second, tmp_path):
    run.upload_file(first, _bytes("first"))
    with pytest.raises(Conflict, match="both a file and a folder"):
        run.upload_file(second, _bytes("second"))
    assert run.get_file_names() == [first]
    written = run.download_files(output_directory=str(tmp_path / "out"))
    assert [open(p).read() for p in written] == ["first"]  # noqa: SIM115


def test_a_path_part_over_255_bytes_is_refused_before_anything_is_written(run):
    for name in ("outputs/" + "m" * 256, "é" * 128 + "/x"):
        with pytest.raises(UserError, match="at most 255"):
            run.upload_file(name, _bytes())
    assert run.get_file_names() == []


def test_bytes_that_cannot_be_placed_leave_no_record(run, ws, tmp_path):
    needs_local(ws)
    folder = os.path.join(ws.artifacts_root, "runs", run.id)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with open(folder, "w") as fh:  # a file where the run's folder must be
        fh.write("in the way")
    with pytest.raises(Conflict, match="share a name"):
        run.upload_file("planted/model.pkl", _bytes())
    assert run.get_file_names() == []
    os.unlink(folder)
    run.upload_file("model.pkl", _bytes("ok"))
    assert run.download_files(output_directory=str(tmp_path / "out"))
    assert os.listdir(os.path.join(ws.artifacts_root, ".staging")) == []


def test_two_writers_racing_for_one_name_leave_one_winner_with_its_own_bytes(ws_uri, tmp_path):
    uri, artifacts = ws_uri
    ws = Workspace(uri, artifacts=artifacts)
    run = Experiment(ws, "race").start_logging(snapshot_directory=None, outputs=False)
    results: dict[int, str] = {}
    start = threading.Barrier(4)

    def upload(i):
        mine = Workspace(uri, artifacts=artifacts).get_run(run.id)
        start.wait()
        try:
            mine.upload_file("model.pkl", io.BytesIO(f"writer {i}".encode() * 10000))
            results[i] = "won"
        except Conflict:
            results[i] = "lost"

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if r == "won"]
    assert len(winners) == 1
    target = tmp_path / "model.pkl"
    run.download_file("model.pkl", str(target))
    assert target.read_bytes() == f"writer {winners[0]}".encode() * 10000


def test_outputs_that_cannot_be_stored_make_the_run_failed_not_completed(local_ws):
    run = Experiment(local_ws, "files").start_logging(snapshot_directory=None)
    run.log("kept", 1.0)
    with open("outputs/model.pkl", "w") as fh:
        fh.write("weights")
    subprocess.run(["rm", "-rf", local_ws.artifacts_root], check=True)  # the folder is gone
    with pytest.raises(StoreError, match="could not be stored"):
        run.complete()
    assert run.get_status() == "Failed"
    assert run.get_details()["error"]["error"]["code"] == "RunDataNotStored"
    assert "outputs/model.pkl" in run.get_details()["error"]["error"]["message"]
    assert run.get_metrics() == {"kept": 1.0}


@contextlib.contextmanager
def _tiny_disk(path, size):
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_artifact_disk_fails_the_upload_cleanly_and_the_run_is_not_completed(
    tmp_path, monkeypatch
):
    with _tiny_disk(tmp_path / "disk", "256k") as disk:
        ws = Workspace(str(tmp_path / "ws"), artifacts=str(disk))
        monkeypatch.chdir(tmp_path)
        run = Experiment(ws, "full").start_logging(snapshot_directory=None)
        with pytest.raises(StoreError, match="full"):
            run.upload_file("big.bin", io.BytesIO(b"\0" * 1_000_000))
        assert run.get_file_names() == []
        assert os.listdir(os.path.join(disk, ".staging")) == []
        run.upload_file("small.txt", _bytes("fits"))
        with open("outputs/weights.bin", "wb") as fh:
            fh.write(b"\1" * 1_000_000)
        run.log("loss", 0.5)
        with pytest.raises(StoreError, match="full"):
            run.complete()
        assert run.get_status() == "Failed"
        assert run.get_file_names() == ["small.txt"]
        assert run.get_metrics() == {"loss": 0.5}


def test_a_full_database_disk_keeps_the_points_and_stores_them_once_there_is_room(tmp_path):
    with _tiny_disk(tmp_path / "disk", "1m") as disk:
        ws = Workspace(str(disk / "ws"), artifacts=str(tmp_path / "artifacts"))
        run = Experiment(ws, "full").start_logging(snapshot_directory=None, outputs=False)
        for i in range(300_000):
            run.log("x", float(i), step=i)
        with pytest.raises(StoreError, match="full"):
            run.flush()
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        run.flush()
        run.complete()
        assert run.get_status() == "Completed"
        assert run.get_metric_history("x").steps == list(range(300_000))


def test_an_output_deleted_while_the_run_finishes_is_not_a_failure(local_ws, monkeypatch):
    """A temporary file removed between listing ./outputs and reading it was never an
    output to keep: the run completes with the others."""
    from runyard import _run_files

    run = Experiment(local_ws, "files").start_logging(snapshot_directory=None)
    for name in ("keep.txt", "tmp.txt"):
        with open(f"outputs/{name}", "w") as fh:
            fh.write(name)
    listed = _run_files._walk

    def walk_then_lose_tmp(folder):
        for rel, full in listed(folder):
            if rel == "tmp.txt":
                os.unlink(full)  # another thread of the script cleans up right now
            yield rel, full

    monkeypatch.setattr(_run_files, "_walk", walk_then_lose_tmp)
    run.complete()
    assert run.get_status() == "Completed"
    assert run.get_file_names() == ["outputs/keep.txt"]


def test_leftovers_of_a_killed_upload_never_take_a_name(ws):
    """An upload killed between placing its bytes and storing its record leaves bytes no
    record names. They gave a Conflict ("a file and a folder would share a name") to
    every later upload of a name under them or over them, forever."""
    run = Experiment(ws, "files").start_logging(snapshot_directory=None, outputs=False)
    folder = os.path.join(ws.artifacts_root, "runs", run.id)
    os.makedirs(os.path.join(folder, "ckpt", "epoch1"))
    with open(os.path.join(folder, "model"), "wb") as fh:
        fh.write(b"bytes of an upload killed before its record")
    with open(os.path.join(folder, "ckpt", "epoch1", "w.bin"), "wb") as fh:
        fh.write(b"more of them")
    run.upload_file("model/weights.bin", _bytes("new weights"))
    run.upload_file("ckpt", _bytes("a file now"))
    assert run.get_file_names() == ["ckpt", "model/weights.bin"]
    with run._artifacts.open(run.id, "ckpt") as fh:
        assert fh.read() == b"a file now"
    with pytest.raises(Conflict, match="cannot be both a file and a folder"):
        run.upload_file("model", _bytes("x"))  # recorded names still never give way


def test_a_with_block_whose_log_cannot_be_recorded_fails_the_run_and_keeps_the_error(
    local_ws, monkeypatch
):
    run = Experiment(local_ws, "files").start_logging(snapshot_directory=None, outputs=False)
    store = local_ws._store
    real = store.add_artifact

    def refuse_the_log(record, place=None):
        if record.path == "logs/user_log.txt" and record.size:
            raise StoreError("the database is unreachable")
        return real(record, place)

    monkeypatch.setattr(store, "add_artifact", refuse_the_log)
    with pytest.warns(RuntimeWarning, match="unreachable"):  # noqa: SIM117
        with pytest.raises(ValueError, match="the user's own error"), run:
            print("hello")
            raise ValueError("the user's own error")
    assert run.get_status() == "Failed"  # never left Running
    ok = Experiment(local_ws, "files").start_logging(snapshot_directory=None, outputs=False)
    with pytest.raises(StoreError, match="unreachable"), ok:
        print("hello")
    assert ok.get_status() == "Failed"  # Completed only when everything was stored
