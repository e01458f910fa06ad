"""What a hostile review of the MLflow face found, each now a 4xx that changes nothing
(a 5xx would make the stock client retry for minutes)."""

from __future__ import annotations

import base64
import json

import pytest
from tests.live_server import serve_workspace
from tests.server.test_bad_input import raw_request

from runyard.records import Condition, RunQuery


@pytest.fixture
def served(ws_uri, tmp_path):
    uri, artifacts = ws_uri
    with serve_workspace(uri, artifacts or str(tmp_path / "art"), auth=False) as (url, store):

        def call(path, body):
            status, parsed, _ = raw_request(
                url,
                "POST",
                f"/api/2.0/mlflow/{path}",
                json.dumps(body).encode() if not isinstance(body, bytes) else body,
                headers={"Content-Type": "application/json"},
            )
            return status, parsed

        _, made = call("experiments/create", {"name": "hostile"})
        experiment_id = made["experiment_id"]
        run_id = call("runs/create", {"experiment_id": experiment_id})[1]["run"]["info"]["run_id"]
        yield call, store, experiment_id, run_id


def _token(offset):
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def test_searches_too_big_or_mistyped_are_400s(served):
    call, store, experiment_id, _ = served
    many = " AND ".join(f"params.p{i} = 'x'" for i in range(200))
    for body in (
        {"filter": many},  # held a PostgreSQL server for 30 s; 990 clauses broke SQLite
        {"filter": "x" * 20_000},
        {"filter": 5},
        {"filter": ["a"]},
        {"page_token": 5},
        {"page_token": _token(10**23)},
        {"page_token": _token(1e308)},
        {"page_token": _token(-1)},
        {"filter": "attributes.start_time > 1e999"},
        {"filter": "start_time = " + "9" * 5000},
    ):
        status, parsed = call("runs/search", {"experiment_ids": [experiment_id], **body})
        assert status == 400 and parsed["error_code"] == "INVALID_PARAMETER_VALUE", body
    status, _ = call("logged-models/search", {"experiment_ids": [experiment_id], "page_token": 7})
    assert status == 400
    status, _ = call("experiments/search", {"page_token": 5})
    assert status == 400
    with pytest.raises(Exception, match="at most 25"):
        store.search_runs(
            RunQuery(conditions=tuple(Condition("tag", f"t{i}", "=", "x") for i in range(26)))
        )


def test_numbers_out_of_range_are_400s_and_store_nothing(served):
    call, store, _, run_id = served
    for body in (
        {"run_id": run_id, "key": "a", "value": 10**400, "timestamp": 0},
        {"run_id": run_id, "key": "a", "value": 1, "timestamp": 2**63 - 1},
        {"run_id": run_id, "key": "a", "value": 1, "timestamp": 1, "step": 2**64},
    ):
        status, parsed = call("runs/log-metric", body)
        assert status == 400 and parsed["error_code"] == "INVALID_PARAMETER_VALUE", body
    infinite = b'{"run_id": "%s", "metrics": [{"key": "a", "value": 1, "timestamp": Infinity}]}'
    assert call("runs/log-batch", infinite % run_id.encode())[0] == 400
    assert call("runs/update", {"run_id": run_id, "status": ["RUNNING"]})[0] == 400
    assert store.list_series([run_id]) == []


def test_a_refused_batch_stores_none_of_its_params(served):
    call, store, _, run_id = served
    for tags, metric_key in (
        ([{"key": "t1", "value": "a\x00b"}], "m"),
        ([{"key": "mlflow.parentRunId", "value": "someone-else"}], "m"),
        ([{"key": "t3", "value": "ok"}], "m\udc80"),
        ([{"key": "t4", "value": {"a": 1}}], "m"),
    ):
        body = {
            "run_id": run_id,
            "params": [{"key": "p", "value": "v"}],
            "tags": tags,
            "metrics": [{"key": metric_key, "value": 1.0, "timestamp": 1, "step": 0}],
        }
        data = json.dumps(body).encode()
        status, parsed = call("runs/log-batch", data)
        assert status == 400, (tags, metric_key, parsed)
    run = store.get_run(run_id)
    assert run.properties == {} and run.tags == {}
    assert call("runs/log-metric", {"run_id": run_id, "key": "m\x00", "value": 1})[0] == 400
    assert store.list_series([run_id]) == []


def test_a_deleted_logged_model_is_gone(served):
    call, store, experiment_id, run_id = served
    status, made = call("logged-models", {"experiment_id": experiment_id, "source_run_id": run_id})
    model_id = made["model"]["info"]["model_id"]
    store.set_deleted(model_id, True)  # what DELETE /mlflow/logged-models/{id} does
    status, parsed = call("logged-models/search", {"experiment_ids": [experiment_id]})
    assert status == 200 and parsed.get("models", []) == []
    status, parsed = call(f"logged-models/{model_id}/params", {"params": []})
    assert status == 404 and parsed["error_code"] == "RESOURCE_DOES_NOT_EXIST"
