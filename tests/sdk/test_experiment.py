from __future__ import annotations

import types

import pytest

from runyard import Experiment, UserError


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 256, "new\nline", "tab\t", "nul\x00", "lone \udc80", None, 5],
)
def test_bad_experiment_names(local_ws, name):
    with pytest.raises(UserError):
        Experiment(local_ws, name)
    assert local_ws.experiments == {}


def test_experiment_names_are_text_as_in_mlflow(ws):
    """Azure ML takes letters, digits, '_' and '-'; MLflow's names are any text, and an
    experiment made through the MLflow face opens by its name in the SDK."""
    names = ["MLflow Quickstart", "/Shared/churn", "..", "модель 2", "-dash"]
    for name in names:
        assert Experiment(ws, name).name == name
    assert sorted(ws.experiments) == sorted(names)


def test_get_or_create(ws):
    a = Experiment(ws, "same_name-1")
    b = Experiment(ws, "same_name-1")
    assert a == b and a.id == b.id
    assert "Name: same_name-1" in repr(a)


def test_get_runs_is_a_lazy_newest_first_generator_with_filters(ws):
    exp = Experiment(ws, "e")
    runs = []
    for i in range(5):
        run = exp.start_logging(
            snapshot_directory=None, tags={"i": i, "odd": None} if i % 2 else {"i": i}
        )
        run.add_properties({"author": "me" if i < 2 else "you"})
        runs.append(run)
    child = runs[0].child_run("kid")
    runs[4].complete()
    found = exp.get_runs()
    assert isinstance(found, types.GeneratorType)
    assert [r.id for r in found] == [r.id for r in reversed(runs)]
    assert [r.id for r in exp.get_runs(tags="odd")] == [runs[3].id, runs[1].id]
    assert [r.id for r in exp.get_runs(tags={"i": "1"}, properties={"author": "me"})] == [
        runs[1].id
    ]
    assert [r.id for r in exp.get_runs(properties="author")] == [r.id for r in reversed(runs)]
    assert [r.id for r in exp.get_runs(status="Completed")] == [runs[4].id]
    assert child.id in [r.id for r in exp.get_runs(include_children=True)]
    assert child.id not in [r.id for r in exp.get_runs()]
    with pytest.raises(UserError, match="unknown status"):
        list(exp.get_runs(status="Done"))


def test_list_archive_reactivate_and_tags(ws):
    exp = Experiment(ws, "keep")
    other = Experiment(ws, "gone")
    other.archive()
    assert other.archived_time is not None
    assert [e.name for e in Experiment.list(ws)] == ["keep"]
    assert [e.name for e in Experiment.list(ws, view_type="ArchivedOnly")] == ["gone"]
    assert {e.name for e in Experiment.list(ws, view_type="All")} == {"keep", "gone"}
    assert list(ws.experiments) == ["keep"]
    with pytest.raises(UserError, match="Cannot rename"):
        other.reactivate(new_name="x")
    other.reactivate()
    assert other.archived_time is None
    exp.tag("team", "vision")
    exp.set_tags({"stage": 2, "flag": None})
    exp.remove_tags(["stage"])
    assert exp.tags == {"team": "vision", "flag": None}
    assert [e.name for e in Experiment.list(ws, tags={"team": "vision"})] == ["keep"]
    with pytest.raises(UserError, match="view_type"):
        Experiment.list(ws, view_type="Some")


def test_archived_name_is_free_for_a_new_experiment(ws):
    old = Experiment(ws, "reuse")
    old.archive()
    new = Experiment(ws, "reuse")
    assert new.id != old.id
    with pytest.raises(UserError, match="already has that name"):
        old.reactivate()


def test_start_logging_rejects_unknown_arguments(local_ws):
    with pytest.raises(UserError, match="unexpected"):
        Experiment(local_ws, "e").start_logging(snapshot_dir=".")
