"""MLflow 3's logged models, kept as runs: a logged model is a run of type
``mlflow.logged_model`` (target ``mlflow.model``), a child of the run that logged it, whose
params are properties, tags are tags and files are the model's artifacts
(``<experiment>/models/<model id>/artifacts/<file>`` through the artifact proxy). Its
status maps PENDING ↔ Running, READY ↔ Completed, UPLOAD_FAILED ↔ Failed. MLflow's run
searches leave these runs out; runyard's show them under their source run."""

from __future__ import annotations

import uuid
from typing import Any

from ...errors import NotFound, UserError
from ...records import TERMINAL_STATUSES, Condition, NewRun, RunQuery, RunRecord
from ..auth import require_run
from ._rpc import Call, rpc
from .convert import latest_metric, ms
from .experiments import get_experiment, mlflow_id, runyard_id
from .search import max_results, page_offset, parse_filter, search_page

MODEL_TYPE, MODEL_TARGET = "mlflow.logged_model", "mlflow.model"
_STATUS = {"Running": "LOGGED_MODEL_PENDING", "Completed": "LOGGED_MODEL_READY"}
_FROM_STATUS = {
    "LOGGED_MODEL_PENDING": "Running",
    "LOGGED_MODEL_READY": "Completed",
    "LOGGED_MODEL_UPLOAD_FAILED": "Failed",
    "1": "Running",
    "2": "Completed",
    "3": "Failed",
}
NOT_A_MODEL = Condition("attribute", "target", "!=", MODEL_TARGET)


def _model(call: Call, model_id: Any = None) -> RunRecord:
    model_id = model_id or call.text("model_id")
    try:
        record: RunRecord = call.store.get_run(model_id)
    except NotFound:
        record = None  # type: ignore[assignment]
    if record is None or record.target != MODEL_TARGET or record.deleted is not None:
        raise NotFound(f"Logged model with ID '{model_id}' not found.")
    return record


def _writable(call: Call) -> RunRecord:
    """The logged model of a change, which the caller's token may change."""
    record = _model(call)
    require_run(call.who, call.store, record.id)
    return record


def _shown(call: Call, experiment_id: str) -> str:
    return mlflow_id(call.store, experiment_id)


def model_json(call: Call, record: RunRecord, series: list[Any] | None = None) -> dict[str, Any]:
    experiment = _shown(call, record.experiment_id)
    definition = record.run_definition or {}
    source = definition.get("mlflow_source_run_id")
    info = {
        "model_id": record.id,
        "experiment_id": experiment,
        "name": record.display_name or record.id,
        "creation_timestamp_ms": ms(record.created),
        "last_updated_timestamp_ms": ms(record.end or record.created),
        "artifact_uri": f"mlflow-artifacts:/{experiment}/models/{record.id}/artifacts",
        "status": _STATUS.get(record.status, "LOGGED_MODEL_UPLOAD_FAILED"),
        "model_type": definition.get("mlflow_model_type") or "",
        "tags": [{"key": k, "value": v or ""} for k, v in record.tags.items()],
    }
    if source:
        info["source_run_id"] = source
    if series is None:
        series = call.store.list_series([record.id])
    metrics = [m for m in map(latest_metric, series) if m is not None]
    params = [{"key": k, "value": v} for k, v in record.properties.items()]
    return {"info": info, "data": {"params": params, "metrics": metrics}}


def _pairs(items: Any, what: str) -> dict[str, str]:
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UserError(f"Invalid value for parameter '{what}' supplied: a list of objects")
    pairs = {}
    for item in items:
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str) or not key or not isinstance(value, str | int | float):
            raise UserError(f"Invalid {what[:-1]} {item!r}: key and value are text")
        pairs[key] = str(value)
    return pairs


@rpc("POST", "/mlflow/logged-models", "contributor")
def create(call: Call) -> dict[str, Any]:
    experiment = get_experiment(call.store, call.required("experiment_id"))
    source = call.text("source_run_id", required=False)
    parent = None
    if source:
        found = call.store.get_run(source)
        require_run(call.who, call.store, found.id)
        parent = found.id if found.experiment_id == experiment.id else None
    else:
        require_run(call.who, call.store, None)
    name = call.text("name", required=False) or None
    definition = {"mlflow_model_type": call.text("model_type", required=False) or None}
    if source:
        definition["mlflow_source_run_id"] = source
    new = NewRun(
        id=f"m-{uuid.uuid4().hex}",
        parent_id=parent,
        display_name=name,
        type=MODEL_TYPE,
        target=MODEL_TARGET,
        tags=dict(_pairs(call.field("tags"), "tags")),
        properties=_pairs(call.field("params"), "params"),
        run_definition=definition,
        submitted_by=call.who.name,
    )
    (record,) = call.store.create_runs(experiment.id, [new])
    return {"model": model_json(call, record, [])}


@rpc("GET", "/mlflow/logged-models/{model_id}", "reader")
def get(call: Call) -> dict[str, Any]:
    return {"model": model_json(call, _model(call))}


@rpc("PATCH", "/mlflow/logged-models/{model_id}", "contributor")
def finalize(call: Call) -> dict[str, Any]:
    record = _writable(call)
    status = str(call.required("status"))
    if status not in _FROM_STATUS:
        raise UserError(f"Invalid value {status!r} for parameter 'status' supplied")
    wanted = _FROM_STATUS[status]
    if record.status not in TERMINAL_STATUSES and wanted != record.status:
        record = call.store.set_status(record.id, wanted)
    return {"model": model_json(call, record)}


@rpc("DELETE", "/mlflow/logged-models/{model_id}", "contributor")
def delete(call: Call) -> dict[str, Any]:
    record = _writable(call)
    call.store.set_deleted(record.id, True)
    return {}


@rpc("PATCH", "/mlflow/logged-models/{model_id}/tags", "contributor")
def set_tags(call: Call) -> dict[str, Any]:
    record = _writable(call)
    tags = _pairs(call.field("tags"), "tags")
    if tags:
        call.store.set_tags(record.id, dict(tags))
    return {}


@rpc("DELETE", "/mlflow/logged-models/{model_id}/tags/{tag_key}", "contributor")
def delete_tag(call: Call) -> dict[str, Any]:
    record = _writable(call)
    call.store.remove_tags(record.id, [call.text("tag_key")])
    return {}


@rpc("POST", "/mlflow/logged-models/{model_id}/params", "contributor")
def log_params(call: Call) -> dict[str, Any]:
    record = _writable(call)
    params = _pairs(call.field("params"), "params")
    if params:
        call.store.add_properties(record.id, params)
    return {}


@rpc("POST", "/mlflow/logged-models/search", "reader")
def search(call: Call) -> dict[str, Any]:
    ids = call.field("experiment_ids") or []
    if not isinstance(ids, list) or not ids:
        raise UserError("Missing value for required parameter 'experiment_ids'.")
    experiments = tuple(runyard_id(call.store, i) for i in ids)
    text = call.field("filter")
    conditions = [Condition("attribute", "target", "=", MODEL_TARGET)]
    if text:
        if not isinstance(text, str):
            raise UserError("Invalid value for parameter 'filter' supplied: text")
        conditions += parse_filter(text)
    if len(experiments) > 1:
        conditions.append(Condition("attribute", "experiment_id", "IN", experiments))
    count = max_results(call.field("max_results"), default=100)
    offset = page_offset(call.field("page_token"))
    query = RunQuery(
        experiment_id=experiments[0] if len(experiments) == 1 else None,
        conditions=tuple(conditions),
    )
    records, series, token = search_page(call.store, query, count, offset)
    answer: dict[str, Any] = {"models": [model_json(call, r, series[r.id]) for r in records]}
    if token:
        answer["next_page_token"] = token
    return answer


@rpc("GET", "/mlflow/logged-models/{model_id}/artifacts/directories", "reader")
def list_artifacts(call: Call) -> dict[str, Any]:
    from .artifacts import listing

    record = _model(call)
    folder = call.text("artifact_directory_path", required=False) or ""
    experiment = _shown(call, record.experiment_id)
    return {
        "root_uri": f"mlflow-artifacts:/{experiment}/models/{record.id}/artifacts",
        "files": listing(call.store, record.id, folder),
    }
