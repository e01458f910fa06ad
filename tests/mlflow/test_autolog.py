"""mlflow.sklearn.autolog() on a small fit, end to end: params, metrics, tags, the logged
model (MLflow 3's logged-model routes) and its files, loaded back."""

from __future__ import annotations

import warnings


def test_sklearn_autolog_logs_a_model_that_loads_back(tracking, monkeypatch):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow = tracking.mlflow
    mlflow.set_experiment("autolog")
    mlflow.sklearn.autolog(log_input_examples=True, silent=True)
    features, labels = load_iris(return_X_y=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run() as run:
                LogisticRegression(max_iter=300).fit(features, labels)
    finally:
        mlflow.sklearn.autolog(disable=True)
    client = tracking.client()
    got = client.get_run(run.info.run_id)
    assert got.data.params["max_iter"] == "300"
    assert got.data.metrics["training_accuracy_score"] > 0.9
    assert got.data.tags["estimator_class"].endswith("LogisticRegression")
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert [(m.name, m.source_run_id, m.status.to_proto()) for m in models] == [
        ("model", run.info.run_id, 2)  # READY
    ]
    model = models[0]
    assert client.get_logged_model(model.model_id).params["max_iter"] == "300"
    loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    assert list(loaded.predict(features[:3])) == [0, 0, 0]
    assert list(mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(features[:2]))
    # on runyard's face the model is a child run of its run, with the model's files
    from runyard import Experiment, Run

    ws = tracking.workspace(monkeypatch)
    parent = Run(Experiment(ws, "autolog"), run.info.run_id)
    (child,) = parent.get_children()
    assert child.id == model.model_id and child.type == "mlflow.logged_model"
    assert "MLmodel" in child.get_file_names() and "model.pkl" in child.get_file_names()
    assert "training_confusion_matrix.png" in parent.get_file_names()
    # and MLflow's run searches leave the model out
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id])] == [
        run.info.run_id
    ]
