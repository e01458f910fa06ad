from __future__ import annotations

import subprocess

import pytest

from runyard import Conflict, Experiment, UserError


@pytest.fixture
def run(ws):
    return Experiment(ws, "tags").start_logging(snapshot_directory=None)


def test_tags_are_mutable_with_key_only_tags(run):
    run.tag("quality", "fantastic run")
    run.tag("worth another look")
    run.set_tags({"epochs": 10, "quality": "fine"})
    assert run.get_tags() == {"quality": "fine", "worth another look": None, "epochs": "10"}
    run.remove_tags(["epochs"])
    assert run.get_tags() == {"quality": "fine", "worth another look": None}
    assert run.tags == run.get_tags()
    with pytest.raises(UserError, match="dict"):
        run.set_tags("quality")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="must not be empty"):
        run.tag("", "x")


def test_properties_are_add_only(run):
    run.add_properties({"author": "azureml-user", "seed": 1})
    run.add_properties({"author": "azureml-user"})
    run.add_properties({})
    with pytest.raises(Conflict) as info:
        run.add_properties({"other": "x", "author": "someone"})
    message = str(info.value)
    assert "'author'" in message and "'azureml-user'" in message and "'someone'" in message
    assert run.get_properties() == {"author": "azureml-user", "seed": "1"}
    with pytest.raises(UserError, match="cannot be None"):
        run.add_properties({"k": None})


def test_git_properties_are_captured_in_a_repository(local_ws, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "init"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "remote", "add", "origin", "https://example.com/r.git"],
        check=True,
    )
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    run = Experiment(local_ws, "git").start_logging(snapshot_directory=str(repo))
    props = run.get_properties()
    assert props["azureml.git.commit"] == head == props["mlflow.source.git.commit"]
    assert props["azureml.git.branch"] == "main"
    assert props["azureml.git.repository_uri"] == "https://example.com/r.git"
    assert props["azureml.git.dirty"] == "False"
    (repo / "train.py").write_text("print(2)\n")
    dirty = Experiment(local_ws, "git").start_logging(snapshot_directory=str(repo))
    assert dirty.get_properties()["azureml.git.dirty"] == "True"


def test_no_git_properties_outside_a_repository(local_ws, tmp_path):
    run = Experiment(local_ws, "nogit").start_logging()
    assert not any(k.startswith("azureml.git") for k in run.get_properties())


def test_get_runs_with_hundreds_of_tag_filters(ws):
    """SQLite refuses a compound SELECT of more than 500 terms: the filters are nested."""
    exp = Experiment(ws, "many-filters")
    wanted = {f"k{i}": str(i) for i in range(600)}
    hit = exp.start_logging(snapshot_directory=None, outputs=False)
    hit.set_tags(wanted)
    miss = exp.start_logging(snapshot_directory=None, outputs=False)
    miss.set_tags({**wanted, "k599": "other"})
    assert [r.id for r in exp.get_runs(tags=wanted)] == [hit.id]
    filters = {k: None for k in wanted}
    assert {r.id for r in exp.get_runs(tags=filters, properties={})} == {hit.id, miss.id}
