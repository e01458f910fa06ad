from __future__ import annotations

import os
import zipfile

import pytest

from runyard import Experiment, SnapshotError, UserError, _snapshot


def _files(run, tmp_path):
    zpath = run.restore_snapshot(path=str(tmp_path / "restored"))
    with zipfile.ZipFile(zpath) as zf:
        return sorted(zf.namelist())


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    (root / "data").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / "train.py").write_text("print('hi')\n")
    (root / "data" / "big.csv").write_text("1,2\n")
    (root / "notes.log").write_text("log\n")
    return root


def test_no_ignore_file_keeps_everything_but_git(local_ws, src, tmp_path):
    run = Experiment(local_ws, "snap").start_logging(snapshot_directory=str(src))
    assert _files(run, tmp_path) == ["data/big.csv", "notes.log", "train.py"]
    assert run.get_snapshot_id() == run.get_properties()["ContentSnapshotId"]


def test_ignore_file_precedence(local_ws, src, tmp_path):
    (src / ".gitignore").write_text("*.log\n")
    (src / ".amlignore").write_text("data/\n")
    exp = Experiment(local_ws, "snap")
    assert _files(exp.start_logging(snapshot_directory=str(src)), tmp_path / "1") == [
        ".amlignore",
        ".gitignore",
        "notes.log",
        "train.py",
    ]
    (src / ".runyardignore").write_text("train.py\n.*ignore\n")
    assert _files(exp.start_logging(snapshot_directory=str(src)), tmp_path / "2") == [
        "data/big.csv",
        "notes.log",
    ]


def test_snapshots_are_content_addressed(local_ws, src):
    exp = Experiment(local_ws, "snap")
    first = exp.start_logging(snapshot_directory=str(src)).get_snapshot_id()
    assert exp.start_logging(snapshot_directory=str(src)).get_snapshot_id() == first
    (src / "train.py").write_text("print('changed')\n")
    assert exp.start_logging(snapshot_directory=str(src)).get_snapshot_id() != first
    zips = os.listdir(os.path.join(local_ws.artifacts_root, "snapshots"))
    assert len(zips) == 2


def test_links_outside_the_folder_are_not_followed(local_ws, src, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, src / "link.txt")
    os.symlink(tmp_path, src / "linked_dir")
    os.symlink(src / "train.py", src / "inside_link.py")
    run = Experiment(local_ws, "snap").start_logging(snapshot_directory=str(src))
    assert _files(run, tmp_path) == ["data/big.csv", "inside_link.py", "notes.log", "train.py"]


def test_the_workspace_inside_the_folder_is_left_out(tmp_path, monkeypatch):
    from runyard import Workspace

    monkeypatch.chdir(tmp_path)
    ws = Workspace(tmp_path / "history")
    (tmp_path / "train.py").write_text("x = 1\n")
    run = Experiment(ws, "snap").start_logging()
    assert _files(run, tmp_path / "out") == ["train.py"]


def test_limits(local_ws, tmp_path):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(_snapshot.MAX_FILES + 1):
        (many / f"f{i}.txt").write_text("x")
    exp = Experiment(local_ws, "snap")
    with pytest.raises(SnapshotError, match=r"limit of 2000.*runyardignore"):
        exp.start_logging(snapshot_directory=str(many))
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "huge.bin", "wb") as fh:
        fh.truncate(_snapshot.MAX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(SnapshotError, match=r"300\.0 MB"):
        exp.start_logging(snapshot_directory=str(big))
    assert list(exp.get_runs()) == []
    with pytest.raises(UserError, match="not a folder"):
        exp.start_logging(snapshot_directory=str(tmp_path / "missing"))


def test_restore_needs_a_snapshot(local_ws):
    run = Experiment(local_ws, "snap").start_logging(snapshot_directory=None)
    with pytest.raises(UserError, match="no snapshot"):
        run.restore_snapshot()


def test_take_snapshot_once(local_ws, src):
    run = Experiment(local_ws, "snap").start_logging(snapshot_directory=None)
    snapshot_id = run.take_snapshot(str(src))
    assert run.get_snapshot_id() == snapshot_id
    assert run.get_properties()["ContentSnapshotId"] == snapshot_id
    with pytest.raises(UserError, match="already has snapshot"):
        run.take_snapshot(str(src))
