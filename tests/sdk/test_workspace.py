from __future__ import annotations

import json
import os

import pytest

from runyard import Experiment, NotFound, UserError, Workspace
from runyard.errors import ConfigNotFound


def test_local_workspace_creates_its_files(tmp_path):
    ws = Workspace(tmp_path / "ws")
    assert (tmp_path / "ws" / "runyard.db").is_file()
    assert (tmp_path / "ws" / "artifacts").is_dir()
    assert ws.experiments == {}


def test_write_config_then_from_config_walks_up(tmp_path):
    project = tmp_path / "project"
    ws = Workspace(project / ".runyard")
    written = ws.write_config(project)
    assert written == str(project / ".runyard" / "config.json")
    assert json.loads((project / ".runyard" / "config.json").read_text()) == {"uri": ".runyard"}
    nested = project / "src" / "deep"
    nested.mkdir(parents=True)
    found = Workspace.from_config(nested)
    assert found.uri == ws.uri
    Experiment(ws, "seen")
    assert list(found.experiments) == ["seen"]
    assert Workspace.from_config(project / ".runyard" / "config.json").uri == ws.uri


def test_from_config_error_names_the_places_searched(tmp_path, monkeypatch):
    monkeypatch.delenv("RUNYARD_URI", raising=False)
    start = tmp_path / "a" / "b"
    start.mkdir(parents=True)
    with pytest.raises(ConfigNotFound) as info:
        Workspace.from_config(start)
    message = str(info.value)
    assert str(start / ".runyard" / "config.json") in message
    assert str(tmp_path / "a" / ".runyard" / "config.json") in message
    assert "runyard init" in message and "write_config" in message


def test_environment_variable_overrides_the_config(tmp_path, monkeypatch):
    Workspace(tmp_path / "configured").write_config(tmp_path)
    monkeypatch.setenv("RUNYARD_URI", str(tmp_path / "from-env"))
    assert Workspace.from_config(tmp_path).uri == str(tmp_path / "from-env")
    monkeypatch.chdir(tmp_path.parent)  # no config anywhere above: the variable suffices
    assert Workspace.from_config().uri == str(tmp_path / "from-env")


def test_bad_configs_and_uris(tmp_path):
    cfg = tmp_path / ".runyard"
    cfg.mkdir()
    (cfg / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read workspace configuration"):
        Workspace.from_config(tmp_path)
    (cfg / "config.json").write_text("{}")
    with pytest.raises(UserError, match='no "uri"'):
        Workspace.from_config(tmp_path)
    with pytest.raises(UserError, match="artifacts"):
        Workspace("postgresql://postgres@127.0.0.1/test")
    with pytest.raises(UserError, match="unsupported workspace URI"):
        Workspace("s3://bucket/ws")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        Workspace(tmp_path / "file")


def test_postgres_config_keeps_the_artifact_directory(pg_uri, tmp_path):
    ws = Workspace(pg_uri, artifacts=str(tmp_path / "shared"))
    ws.write_config(tmp_path / "project")
    config = json.loads((tmp_path / "project" / ".runyard" / "config.json").read_text())
    assert config == {"uri": pg_uri, "artifacts": str(tmp_path / "shared")}
    again = Workspace.from_config(tmp_path / "project")
    assert again.artifacts_root == str(tmp_path / "shared")


def test_get_run_finds_any_experiment(local_ws):
    run = Experiment(local_ws, "x").start_logging(snapshot_directory=None)
    run.complete()
    fetched = local_ws.get_run(run.id)
    assert fetched.experiment.name == "x" and fetched.get_status() == "Completed"
    with pytest.raises(NotFound, match="no run with id"):
        local_ws.get_run("nope")


def test_sqlite_uri_form(tmp_path):
    ws = Workspace(f"sqlite:///{tmp_path}/db/history.db")
    assert os.path.isfile(tmp_path / "db" / "history.db")
    assert ws.artifacts_root == str(tmp_path / "db" / "artifacts")
