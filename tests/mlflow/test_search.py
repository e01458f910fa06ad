"""search_runs with MLflow's grammar, orders and page tokens, through the stock client."""

from __future__ import annotations

import pytest


@pytest.fixture
def sweep(tracking):
    """12 runs in one experiment: alpha and acc vary, every third FAILED."""
    client = tracking.client()
    experiment_id = client.create_experiment("sweep")
    ids = []
    for i in range(12):
        run = client.create_run(
            experiment_id, run_name=f"trial-{i:02d}", tags={"group": f"g{i % 3}"}
        )
        client.log_param(run.info.run_id, "alpha", f"{i / 10:.1f}")
        client.log_param(run.info.run_id, "model", "Ridge" if i % 2 else "lasso")
        if i != 11:
            client.log_metric(run.info.run_id, "acc", i / 20, step=0)
        client.set_terminated(run.info.run_id, "FAILED" if i % 3 == 0 else "FINISHED")
        ids.append(run.info.run_id)
    return client, experiment_id, ids


def _search(client, experiment_id, text="", **kw):
    return [r.info.run_name for r in client.search_runs([experiment_id], text, **kw)]


def test_filters_on_metrics_params_tags_and_attributes(sweep):
    client, exp, ids = sweep
    assert sorted(_search(client, exp, "metrics.acc >= 0.45")) == ["trial-09", "trial-10"]
    assert sorted(_search(client, exp, "metrics.acc != 0.5")) == [
        f"trial-{i:02d}" for i in range(11) if i != 10
    ]  # trial-11 has no acc: it matches nothing, not even !=
    assert len(_search(client, exp, "params.model = 'Ridge'")) == 6
    assert len(_search(client, exp, "params.model LIKE 'r%'")) == 0  # LIKE is case-sensitive
    assert len(_search(client, exp, "params.model ILIKE 'r%'")) == 6
    assert sorted(_search(client, exp, "tags.group = 'g1' AND params.model = 'lasso'")) == [
        "trial-04",
        "trial-10",
    ]
    assert len(_search(client, exp, "attributes.status = 'FAILED'")) == 4
    assert len(_search(client, exp, "status != 'FAILED'")) == 8
    assert _search(client, exp, "attributes.run_name = 'trial-03'") == ["trial-03"]
    assert _search(client, exp, "run_name ILIKE 'TRIAL-0_' AND metrics.acc > 0.3") == [
        "trial-09",
        "trial-08",
        "trial-07",
    ]  # newest first
    chosen = f"attributes.run_id IN ('{ids[1]}', '{ids[2]}')"
    assert sorted(_search(client, exp, chosen)) == ["trial-01", "trial-02"]
    assert len(_search(client, exp, f"run_id NOT IN ('{ids[0]}')")) == 11
    start = client.get_run(ids[5]).info.start_time
    assert len(_search(client, exp, f"attributes.start_time >= {start}")) == 7
    assert len(_search(client, exp, 'tags."group" = "g2"')) == 4
    assert len(_search(client, exp, "params.`alpha` = '0.3'")) == 1
    client.set_tag(ids[4], "note", "checked")
    assert _search(client, exp, "tags.note IS NOT NULL") == ["trial-04"]
    assert len(_search(client, exp, "tags.note is null and params.model = 'lasso'")) == 5


def test_orders_and_pages(sweep, tracking):
    client, exp, _ = sweep
    by_acc = _search(client, exp, order_by=["metrics.acc DESC"])
    assert by_acc[:3] == ["trial-10", "trial-09", "trial-08"] and by_acc[-1] == "trial-11"
    ascending = _search(client, exp, order_by=["metrics.acc"])
    assert ascending[0] == "trial-00" and ascending[-1] == "trial-11"  # missing values last
    by_name = _search(client, exp, order_by=["attributes.run_name ASC"])
    assert by_name == sorted(by_name)
    two_keys = _search(client, exp, order_by=["params.model", "params.alpha DESC"])
    assert two_keys[:2] == ["trial-11", "trial-09"]  # "Ridge" < "lasso"; then alpha down
    seen, token = [], None
    while True:
        page = client.search_runs(
            [exp], "", max_results=5, page_token=token, order_by=["attributes.run_name"]
        )
        seen += [r.info.run_name for r in page]
        token = page.token
        if not token:
            break
    assert seen == [f"trial-{i:02d}" for i in range(12)]
    frame = tracking.mlflow.search_runs([exp], filter_string="metrics.acc < 0.1")
    assert set(frame["tags.mlflow.runName"]) == {"trial-00", "trial-01"}
    assert {"metrics.acc", "params.alpha", "tags.group", "status"} <= set(frame.columns)


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.acc > 0.1 OR metrics.acc < 0.05",
        "metrics.acc > 'high'",
        "params.alpha > '0.1'",
        "datasets.name = 'x'",
        "colour = 'red'",
        "metrics.acc >",
        "(metrics.acc > 1)",
        "metrics.acc IS NULL",
        "tags.x IS 'y'",
    ],
)
def test_a_filter_it_cannot_read_is_invalid_parameter_value(sweep, bad):
    from mlflow.exceptions import MlflowException

    client, exp, _ = sweep
    with pytest.raises(MlflowException) as refused:
        client.search_runs([exp], bad)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


def test_max_results_is_bounded_as_in_mlflow(sweep):
    from mlflow.exceptions import MlflowException

    client, exp, _ = sweep
    with pytest.raises(MlflowException, match="max_results"):
        client.search_runs([exp], "", max_results=50_001)


def test_runs_without_an_experiment_go_to_default(tracking):
    mlflow = tracking.mlflow
    with mlflow.start_run() as run:
        mlflow.log_metric("x", 1.0)
    assert run.info.experiment_id == "0"
    assert tracking.client().get_experiment("0").name == "Default"
    assert [r.info.run_id for r in mlflow.search_runs(["0"], output_format="list")] == [
        run.info.run_id
    ]
