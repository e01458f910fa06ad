"""A workspace whose files are broken gives one clear error naming the file: never a raw
``sqlite3.DatabaseError`` or ``OSError``, in the SDK and in the command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runyard import Experiment, Workspace
from runyard.errors import RunyardError


def _good(tmp_path):
    ws = Workspace(str(tmp_path / "good"))
    run = Experiment(ws, "e").start_logging(snapshot_directory=None, outputs=False)
    for i in range(2000):
        run.log_row("rows", i=i, text="padding " * 10)
    run.complete()
    ws._store.close()
    with open(tmp_path / "good" / "runyard.db", "rb") as fh:
        return fh.read()


def _break(tmp_path, how):
    folder = tmp_path / how
    folder.mkdir()
    db = folder / "runyard.db"
    if how == "corrupt":
        db.write_bytes(b"this is not a database " * 500)
    elif how == "truncated":
        data = _good(tmp_path)
        db.write_bytes(data[: len(data) // 3])
    elif how == "folder":
        db.mkdir()
    elif how == "under-a-file":
        folder.rmdir()
        folder.write_text("a file where the workspace folder should be")
        return str(folder / "ws"), str(folder)
    return str(folder), str(db)


@pytest.mark.parametrize("how", ["corrupt", "truncated", "folder", "under-a-file"])
def test_a_broken_workspace_is_one_clear_error(tmp_path, how):
    uri, named = _break(tmp_path, how)
    with pytest.raises(RunyardError) as caught:
        ws = Workspace(uri)
        list(Experiment(ws, "e").get_runs())  # a truncated file fails on its first real read
    message = str(caught.value)
    assert named in message
    assert any(hint in message for hint in ("backup", "move it away", "not a folder"))
    cli = subprocess.run(
        [sys.executable, "-m", "runyard.cli", "run", "list", "-e", "e", "--workspace", uri],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert cli.returncode == 1
    assert cli.stderr.startswith("error: ") and named in cli.stderr
    assert "Traceback" not in cli.stderr and cli.stderr.count("\n") == 1
    if how != "under-a-file":
        assert os.path.exists(named)  # left as it was for the user to rescue


@pytest.mark.parametrize(
    "where",
    [
        {"uri": "{tmp}/ws\x00x"},
        {"uri": "postgresql://postgres@127.0.0.1/test\x00", "artifacts": "{tmp}/a"},
        {"uri": "{tmp}/ws", "artifacts": "{tmp}/a\x00"},
    ],
)
def test_a_nul_in_a_workspace_or_artifact_path_is_a_user_error(tmp_path, where):
    from runyard.errors import UserError

    uri = where["uri"].format(tmp=tmp_path)
    artifacts = where.get("artifacts")
    with pytest.raises(UserError, match="NUL"):  # was: ValueError: embedded null byte
        Workspace(uri, artifacts=None if artifacts is None else artifacts.format(tmp=tmp_path))


def test_a_database_emptied_beside_the_files_of_runs_is_refused(tmp_path):
    """SQLite takes an empty file for a new database: the workspace would start over,
    empty, without a word. A new workspace's first open (no run files yet) still works."""
    import io

    ws = Workspace(str(tmp_path / "ws"))
    run = Experiment(ws, "e").start_logging(snapshot_directory=None, outputs=False)
    run.upload_file("outputs/model.bin", io.BytesIO(b"weights"))
    run.complete()
    ws._store.close()
    (tmp_path / "ws" / "runyard.db").write_bytes(b"")  # a copy onto a full disk
    with pytest.raises(RunyardError, match=r"runyard\.db is empty.*files of 1 run"):
        Workspace(str(tmp_path / "ws"))
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "runyard.db").write_bytes(b"")  # killed before its first write
    assert list(Experiment(Workspace(str(tmp_path / "new")), "e").get_runs()) == []
