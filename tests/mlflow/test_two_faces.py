"""One run history, two faces: what the MLflow client writes the runyard SDK reads, and the
other way round."""

from __future__ import annotations

import pytest


def test_an_mlflow_run_is_a_runyard_run(tracking, monkeypatch, tmp_path):
    mlflow = tracking.mlflow
    mlflow.set_experiment("faces")
    with mlflow.start_run(run_name="trainer", description="notes here") as parent:
        mlflow.log_params({"lr": "0.01", "depth": 4})
        for step in range(3):
            mlflow.log_metric("loss", 3.0 - step, step=step * 10)
        mlflow.set_tags({"team": "nlp"})
        mlflow.log_text("weights", "outputs/model.txt")
        with mlflow.start_run(run_name="fold-1", nested=True) as child:
            mlflow.log_metric("acc", 0.5)
    ws = tracking.workspace(monkeypatch)
    from runyard import Experiment, Run

    experiment = Experiment(ws, "faces")
    run = Run(experiment, parent.info.run_id)
    assert run.display_name == "trainer" and run.description == "notes here"
    assert run.get_status() == "Completed"
    assert run.get_properties() == {"lr": "0.01", "depth": "4"}
    tags = run.get_tags()
    assert tags["team"] == "nlp" and "mlflow.runName" not in tags  # a run field, not a tag
    history = run.get_metric_history("loss")
    assert list(history.steps) == [0, 10, 20] and list(history.values) == [3.0, 2.0, 1.0]
    assert "outputs/model.txt" in run.get_file_names()
    assert run.get_details()["submittedBy"] == "t-contributor"
    children = list(run.get_children())
    assert [c.id for c in children] == [child.info.run_id]
    assert children[0].get_metrics() == {"acc": 0.5}
    listed = [r.id for r in experiment.get_runs()]
    assert parent.info.run_id in listed
    with pytest.raises(Exception, match="add-only"):
        run.add_properties({"lr": "0.1"})  # params are write-once on both faces


def test_a_runyard_run_is_readable_and_searchable_through_mlflow(tracking, monkeypatch):
    ws = tracking.workspace(monkeypatch)
    from runyard import Experiment

    experiment = Experiment(ws, "sdk-side")
    run = experiment.start_logging(display_name="sdk run", snapshot_directory=None)
    run.add_properties({"alpha": "0.5"})
    run.set_tags({"kind": "ridge", "flag": None})
    for i in range(4):
        run.log("rmse", 10.0 - i)
    run.log_list("sizes", [1, 2, 3])
    run.upload_file("outputs/result.txt", __file__)
    child = run.child_run(name="child")
    child.complete()
    run.complete()
    client = tracking.client()
    got = client.get_run(run.id)
    assert got.info.run_name == "sdk run" and got.info.status == "FINISHED"
    assert got.data.params == {"alpha": "0.5"}
    assert got.data.tags["kind"] == "ridge" and got.data.tags["flag"] == ""
    assert got.data.metrics["rmse"] == 7.0
    assert [m.value for m in client.get_metric_history(run.id, "rmse")] == [10.0, 9.0, 8.0, 7.0]
    found = client.search_runs(
        [experiment.id], "metrics.rmse < 8 and params.alpha = '0.5' and tags.kind LIKE 'ri%'"
    )
    assert [r.info.run_id for r in found] == [run.id]
    nested = client.search_runs([experiment.id], f"tags.mlflow.parentRunId = '{run.id}'")
    assert [r.info.run_id for r in nested] == [child.id]
    files = [f.path for f in client.list_artifacts(run.id, "outputs")]
    assert files == ["outputs/result.txt"]
    # statuses map both ways
    failed = experiment.start_logging(snapshot_directory=None)
    failed.fail()
    canceled = experiment.start_logging(snapshot_directory=None)
    canceled.cancel()
    assert client.get_run(failed.id).info.status == "FAILED"
    assert client.get_run(canceled.id).info.status == "KILLED"
    assert client.get_run(experiment.start_logging(snapshot_directory=None).id).info.status == (
        "RUNNING"
    )


def test_a_soft_deleted_run_is_hidden_from_both_faces_until_restored(tracking, monkeypatch):
    client = tracking.client()
    ws = tracking.workspace(monkeypatch)
    from runyard import Experiment

    experiment = Experiment(ws, "hidden")
    kept = experiment.start_logging(snapshot_directory=None)
    gone = experiment.start_logging(snapshot_directory=None)
    client.delete_run(gone.id)
    assert [r.id for r in experiment.get_runs()] == [kept.id]
    assert [r.info.run_id for r in client.search_runs([experiment.id])] == [kept.id]
    client.restore_run(gone.id)
    assert {r.id for r in experiment.get_runs()} == {kept.id, gone.id}
