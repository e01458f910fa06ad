"""Opening only what exists: a workspace or an experiment looked up is never created."""

from __future__ import annotations

import json

import psycopg
import pytest

from runyard import Experiment, NotFound, Workspace


def test_a_missing_local_workspace_is_not_created(tmp_path):
    with pytest.raises(NotFound, match=r"no runyard workspace at .*typo"):
        Workspace(str(tmp_path / "typo"), _create=False)
    assert not (tmp_path / "typo").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="runyard init"):
        Workspace(str(tmp_path / "empty"), _create=False)
    assert list((tmp_path / "empty").iterdir()) == []
    Workspace(str(tmp_path / "real"))._store.close()  # the SDK still creates by default
    Workspace(str(tmp_path / "real"), _create=False)._store.close()


def test_a_config_naming_a_missing_workspace(tmp_path):
    (tmp_path / ".runyard").mkdir()
    (tmp_path / ".runyard" / "config.json").write_text(json.dumps({"uri": "gone"}))
    with pytest.raises(NotFound, match="gone"):
        Workspace.from_config(tmp_path, _create=False)
    assert not (tmp_path / "gone").exists()


def test_a_postgresql_database_without_a_workspace(pg_uri, tmp_path):
    with pytest.raises(NotFound, match="no runyard tables"):
        Workspace(pg_uri, artifacts=str(tmp_path / "art"), _create=False)
    schema = pg_uri.rsplit("%3D", 1)[1]
    with psycopg.connect(pg_uri) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
    assert tables == (0,)
    assert not (tmp_path / "art").exists()
    Workspace(pg_uri, artifacts=str(tmp_path / "art"))._store.close()
    Workspace(pg_uri, artifacts=str(tmp_path / "art"), _create=False)._store.close()
    with pytest.raises(NotFound, match=r"artifact folder .*typo"):
        Workspace(pg_uri, artifacts=str(tmp_path / "typo"), _create=False)
    assert not (tmp_path / "typo").exists()


def test_custom_artifacts_of_a_local_workspace_are_in_its_config(tmp_path):
    ws = Workspace(str(tmp_path / "ws"), artifacts=str(tmp_path / "elsewhere"))
    ws.write_config(tmp_path / "project")
    again = Workspace.from_config(tmp_path / "project", _create=False)
    assert again.artifacts_root == str(tmp_path / "elsewhere")


def test_looking_an_experiment_up_does_not_create_it(ws):
    with pytest.raises(NotFound, match=r"no experiment named .typo.: .* has no experiments yet"):
        Experiment(ws, "typo", _create_in_cloud=False)
    Experiment(ws, "alpha")
    Experiment(ws, "beta").archive()
    Experiment(ws, "beta")
    old = Experiment(ws, "old")
    old.archive()
    with pytest.raises(NotFound, match=r"are: alpha, beta$"):
        Experiment(ws, "typo", _create_in_cloud=False)
    with pytest.raises(NotFound, match="an archived experiment has that name"):
        Experiment(ws, "old", _create_in_cloud=False)
    assert sorted(Experiment.list(ws, view_type="ActiveOnly"), key=lambda e: e.name) == [
        Experiment(ws, "alpha", _create_in_cloud=False),
        Experiment(ws, "beta", _create_in_cloud=False),
    ]
