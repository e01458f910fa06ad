from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from runyard import Conflict, Experiment, UserError


@pytest.fixture
def run(ws):
    return Experiment(ws, "files").start_logging(snapshot_directory=None)


def _artifact_files(run):
    root = os.path.join(run._artifacts.root, "runs")
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_upload_and_download_a_file(run, tmp_path):
    (tmp_path / "work" / "model.bin").write_bytes(b"\x00weights")
    run.upload_file("outputs/model.bin", "model.bin")
    run.upload_file("outputs/notes.txt", io.BytesIO(b"notes"))
    assert run.get_file_names() == ["outputs/model.bin", "outputs/notes.txt"]
    run.download_file("outputs/model.bin")
    os.makedirs("into")
    run.download_file("outputs/notes.txt", "into")
    assert (tmp_path / "work" / "into" / "notes.txt").read_bytes() == b"notes"
    run.download_file("outputs/model.bin", str(tmp_path / "copy.bin"))
    assert (tmp_path / "copy.bin").read_bytes() == b"\x00weights"


def test_artifacts_are_write_once(run):
    run.upload_file("outputs/a.txt", io.BytesIO(b"one"))
    with pytest.raises(Conflict, match="already exists"):
        run.upload_file("outputs/a.txt", io.BytesIO(b"two"))
    run.download_file("outputs/a.txt", "a.txt")
    assert Path("a.txt").read_bytes() == b"one"


@pytest.mark.parametrize(
    "name",
    [
        "../escape.txt",
        "outputs/../../escape.txt",
        "/etc/passwd",
        "C:/x.txt",
        "outputs\\x.txt",
        "bad\x00name",
        "%2e%2e%2fescape.txt",
        "outputs/%2e%2e/%2e%2e/x",
        "%252e%252e%252fx",
        "outputs/..;/..;/x",  # ";" path parameters: ".." to some servers
        "",
        "outputs/",
    ],
)
def test_bad_artifact_names_change_nothing(run, name):
    with pytest.raises(UserError):
        run.upload_file(name, io.BytesIO(b"x"))
    assert run.get_file_names() == []
    assert _artifact_files(run) == []


def test_upload_of_missing_or_wrong_things(run, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        run.upload_file("outputs/x", "does-not-exist.txt")
    (tmp_path / "work" / "folder").mkdir()
    with pytest.raises(UserError, match="upload_folder"):
        run.upload_file("outputs/x", "folder")
    with pytest.raises(UserError, match="UnsupportedType"):
        run.upload_file("outputs/x", 42)
    with pytest.raises(UserError, match="not a valid directory"):
        run.upload_folder("outputs/x", "nope")
    assert run.get_file_names() == []


def test_upload_files_checks_everything_first(run, tmp_path):
    (tmp_path / "work" / "a.txt").write_text("a")
    (tmp_path / "work" / "b.txt").write_text("b")
    with pytest.raises(UserError, match="equal lengths"):
        run.upload_files(["x"], ["a.txt", "b.txt"])
    with pytest.raises(UserError, match="no such file"):
        run.upload_files(["x", "y"], ["a.txt", "missing.txt"])
    with pytest.raises(UserError, match=r"\.\."):
        run.upload_files(["x", "../y"], ["a.txt", "b.txt"])
    assert run.get_file_names() == []
    with pytest.warns(UserWarning, match="given twice"):
        list(run.upload_files(["x", "x", "y"], ["a.txt", "b.txt", "b.txt"]))
    assert run.get_file_names() == ["x", "y"]
    run.download_file("x", "x.out")
    assert Path("x.out").read_text() == "a"
    with pytest.raises(Conflict):
        run.upload_files(["z", "y"], ["a.txt", "b.txt"])
    assert run.get_file_names() == ["x", "y"]


def test_upload_folder_and_download_files(run, tmp_path):
    src = tmp_path / "work" / "model"
    (src / "sub").mkdir(parents=True)
    (src / "w.bin").write_bytes(b"w")
    (src / "sub" / "cfg.json").write_text("{}")
    run.upload_folder("outputs/model", str(src))
    run.upload_file("logs/x.txt", io.BytesIO(b"log"))
    assert run.get_file_names() == [
        "logs/x.txt",
        "outputs/model/sub/cfg.json",
        "outputs/model/w.bin",
    ]
    out = tmp_path / "dl"
    written = run.download_files(prefix="outputs", output_directory=str(out))
    assert sorted(written) == [
        str(out / "outputs" / "model" / "sub" / "cfg.json"),
        str(out / "outputs" / "model" / "w.bin"),
    ]
    flat = tmp_path / "flat"
    run.download_files(prefix="outputs/model", output_directory=str(flat), append_prefix=False)
    assert (flat / "sub" / "cfg.json").read_text() == "{}"
    everything = run.download_files(output_directory=str(tmp_path / "all"))
    assert len(everything) == 3
    with pytest.raises(UserError):
        run.download_files(prefix="../x")


def test_download_unknown_file(run):
    from runyard import NotFound

    with pytest.raises(NotFound, match="get_file_names"):
        run.download_file("outputs/none.txt")
