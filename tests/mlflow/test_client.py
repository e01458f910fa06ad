"""The stock MLflow client's tracking calls against runyard, as users write them."""

from __future__ import annotations

import os
import time

import pytest


def test_a_fluent_training_script_works_unchanged(tracking, tmp_path):
    mlflow = tracking.mlflow
    experiment = mlflow.set_experiment("MLflow Quickstart")  # MLflow's names: spaces too
    assert experiment.name == "MLflow Quickstart"
    stamp = int(time.time() * 1000) - 5000
    with mlflow.start_run(run_name="parent", description="a sweep") as parent:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"layers": 3, "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step, timestamp=stamp + step)
        mlflow.log_metrics({"acc": 0.9, "nan": float("nan"), "inf": float("inf")}, step=2)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev", "empty": ""})
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("c", 2.0)
    client = tracking.client()
    run = client.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "parent"
    assert run.info.end_time >= run.info.start_time > 0
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert run.data.params == {"lr": "0.1", "layers": "3", "optimizer": "adam"}
    metrics = run.data.metrics
    assert metrics["loss"] == 0.2 and metrics["acc"] == 0.9 and metrics["inf"] == float("inf")
    assert metrics["nan"] != metrics["nan"]
    tags = run.data.tags
    assert tags["team"] == "vision" and tags["stage"] == "dev" and tags["empty"] == ""
    assert tags["mlflow.runName"] == "parent" and tags["mlflow.note.content"] == "a sweep"
    assert tags["mlflow.user"] and tags["mlflow.source.name"]
    nested = client.get_run(child.info.run_id)
    assert nested.data.tags["mlflow.parentRunId"] == parent.info.run_id
    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (s, 1.0 / (s + 1), stamp + s) for s in range(5)
    ]
    client.delete_tag(parent.info.run_id, "team")
    assert "team" not in client.get_run(parent.info.run_id).data.tags


def test_mlflow_client_calls_and_batches(tracking):
    from mlflow.entities import Metric, Param, RunTag

    client = tracking.client()
    experiment_id = client.create_experiment("client-exp", tags={"owner": "me"})
    assert client.get_experiment(experiment_id).tags == {"owner": "me"}
    assert client.get_experiment_by_name("client-exp").experiment_id == experiment_id
    assert client.get_experiment_by_name("no such experiment") is None
    run = client.create_run(experiment_id, run_name="batch", tags={"k": "v"})
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("m", float(i), now + i, i) for i in range(1500)],  # split by the client
        params=[Param(f"p{i}", str(i)) for i in range(150)],
        tags=[RunTag("t", "1")],
    )
    got = client.get_run(run.info.run_id)
    assert len(got.data.params) == 150 and got.data.metrics["m"] == 1499.0
    assert got.data.tags["k"] == "v" and got.data.tags["t"] == "1"
    assert len(client.get_metric_history(run.info.run_id, "m")) == 1500
    client.set_terminated(run.info.run_id, "KILLED")
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    client.update_run(run.info.run_id, name="renamed")
    assert client.get_run(run.info.run_id).info.run_name == "renamed"
    names = [e.name for e in client.search_experiments()]
    assert "client-exp" in names and "Default" in names


def test_asynchronous_logging_stores_every_point(tracking):
    mlflow = tracking.mlflow
    mlflow.set_experiment("async")
    with mlflow.start_run() as run:
        for step in range(2000):
            mlflow.log_metric("loss", step * 0.5, step=step, synchronous=False)
        mlflow.log_param("p", "1", synchronous=False)
        mlflow.set_tag("t", "x", synchronous=False)
    mlflow.flush_async_logging()
    history = tracking.client().get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(2000))
    assert tracking.client().get_run(run.info.run_id).data.params == {"p": "1"}


def test_a_failing_block_ends_the_run_failed_and_statuses_map(tracking):
    mlflow = tracking.mlflow
    mlflow.set_experiment("statuses")
    with pytest.raises(ZeroDivisionError), mlflow.start_run() as run:
        1 / 0  # noqa: B018
    client = tracking.client()
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    with mlflow.start_run() as again:
        pass
    mlflow.start_run(run_id=again.info.run_id)  # resuming a finished run: it stays finished
    mlflow.log_metric("late", 1.0)
    mlflow.end_run("KILLED")
    assert client.get_run(again.info.run_id).info.status == "FINISHED"
    assert client.get_run(again.info.run_id).data.metrics["late"] == 1.0


def test_artifacts_up_listed_and_down(tracking, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mlflow = tracking.mlflow
    mlflow.set_experiment("files")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("alpha")
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "data" / "sub" / "b.bin").write_bytes(os.urandom(3 << 20))
    (tmp_path / "single.csv").write_text("x,y\n1,2\n")
    figure, axes = plt.subplots()
    axes.plot([1, 2, 3])
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "single.csv"))
        mlflow.log_artifacts(str(tmp_path / "data"), artifact_path="data")
        mlflow.log_dict({"k": [1, 2]}, "config/params.json")
        mlflow.log_text("hello", "notes/readme.txt")
        mlflow.log_figure(figure, "plots/curve.png")
        mlflow.log_image(np.zeros((8, 8, 3), dtype=np.uint8), "images/black.png")
        mlflow.log_image(np.ones((8, 8, 3), dtype=np.uint8), key="sample/a", step=3)
    mlflow.flush_async_logging()  # the keyed image goes through the async queue
    client = tracking.client()
    run_id = run.info.run_id
    top = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert top == {
        ("single.csv", False),
        ("data", True),
        ("config", True),
        ("notes", True),
        ("plots", True),
        ("images", True),
    }
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "data/sub")] == [
        ("data/sub/b.bin", 3 << 20)
    ]
    local = client.download_artifacts(run_id, "data", str(tmp_path / "down"))
    with open(os.path.join(local, "a.txt")) as fh:
        assert fh.read() == "alpha"
    assert (tmp_path / "down/data/sub/b.bin").read_bytes() == (
        tmp_path / "data/sub/b.bin"
    ).read_bytes()
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"k": [1, 2]}
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/readme.txt") == "hello"
    png = client.download_artifacts(run_id, "plots/curve.png", str(tmp_path / "png"))
    with open(png, "rb") as fh:
        assert fh.read(4) == b"\x89PNG"
    keyed = [f.path for f in client.list_artifacts(run_id, "images")]
    assert any(p.startswith("images/sample~a+step+3+") for p in keyed), keyed
    assert client.get_run(run_id).data.tags["mlflow.loggedImages"] == "True"
    # the run's files are runyard's run files: the same bytes through the SDK's store
    assert tracking.store.get_artifact(run_id, "data/sub/b.bin").size == 3 << 20


def test_delete_and_restore_runs_and_experiments(tracking):
    mlflow = tracking.mlflow
    client = tracking.client()
    experiment_id = client.create_experiment("to-delete")
    run = client.create_run(experiment_id)
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    assert mlflow.search_runs([experiment_id], output_format="list") == []
    deleted = mlflow.search_runs([experiment_id], run_view_type=2, output_format="list")
    assert [r.info.run_id for r in deleted] == [run.info.run_id]
    with pytest.raises(mlflow.exceptions.MlflowException, match="must be in the 'active' state"):
        client.log_param(run.info.run_id, "p", "1")
    client.restore_run(run.info.run_id)
    assert [r.info.run_id for r in mlflow.search_runs([experiment_id], output_format="list")] == [
        run.info.run_id
    ]
    admin = tracking.mlflow.MlflowClient(tracking.url)
    os.environ["MLFLOW_TRACKING_TOKEN"] = tracking.tokens["admin"]  # archiving is an admin's
    admin.delete_experiment(experiment_id)
    assert admin.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert "to-delete" not in [e.name for e in admin.search_experiments()]
    assert "to-delete" in [e.name for e in admin.search_experiments(view_type=2)]
    admin.restore_experiment(experiment_id)
    assert admin.get_experiment(experiment_id).lifecycle_stage == "active"


def test_mlflow_errors_come_back_with_mlflow_codes(tracking):
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    experiment_id = client.create_experiment("errors")
    with pytest.raises(MlflowException) as taken:
        client.create_experiment("errors")
    assert taken.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert f"Run with id={'0' * 32} not found" in str(missing.value)
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "p", "1")
    client.log_param(run.info.run_id, "p", "1")  # the same value again: fine
    with pytest.raises(MlflowException, match="Changing param values is not allowed") as changed:
        client.log_param(run.info.run_id, "p", "2")
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException, match="exceeds the maximum length of 250"):
        client.log_metric(run.info.run_id, "k" * 251, 1.0)
    with pytest.raises(MlflowException) as bad:
        client.search_runs([experiment_id], "metrics.x > 1 OR metrics.y < 2")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_client_told_to_upload_in_parts_falls_back_to_one_streamed_put(
    tracking, tmp_path, monkeypatch
):
    """runyard answers the multipart routes as an MLflow server whose store has no
    multipart upload does; the client then sends the file whole."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1024")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    mlflow = tracking.mlflow
    mlflow.set_experiment("parts")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big), "data")
    record = tracking.store.get_artifact(run.info.run_id, "data/big.bin")
    assert record.size == 300_000
