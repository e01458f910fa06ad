"""MLflow's run RPCs: create, get, update, delete, log, tags, search, metric history and
the run-scoped artifact listing, each one or a few Store calls."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from typing import Any

from ..._validation import check_name, check_text
from ...errors import Conflict, NotFound, UserError
from ...records import TERMINAL_STATUSES, Condition, NewRun, RunQuery, RunRecord, SeriesAppend
from ..auth import require_run
from ._rpc import Call, rpc
from .convert import (
    FIELD_TAGS,
    MAX_TIMESTAMP,
    NOTE,
    PARENT,
    RUN_NAME,
    STATUS_FROM_MLFLOW,
    integer,
    json_number,
    mlflow_status,
    ms,
    number,
    run_info,
    run_json,
)
from .experiments import get_experiment, runyard_id
from .models import NOT_A_MODEL
from .search import max_results, page_offset, page_token, parse_filter, parse_order, search_page

# MLflow's limits (mlflow/utils/validation.py), enforced with its messages
MAX_BATCH_METRICS, MAX_BATCH_PARAMS, MAX_BATCH_TAGS, MAX_BATCH_ENTITIES = 1000, 100, 100, 1000
MAX_KEY = 250
MAX_PARAM_VALUE, MAX_TAG_VALUE = 6000, 8000
_VIEWS = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all"}
_VIEWS.update({"1": "active", "2": "deleted", "3": "all"})


def _shown_experiment(call: Call, record: RunRecord) -> str:
    return "0" if record.experiment_id == _default(call) else record.experiment_id


def _default(call: Call) -> str:
    cached = getattr(call.request.state, "mlflow_default", None)
    if cached is None:
        found = call.store.find_experiment("Default")
        cached = found.id if found is not None else ""
        call.request.state.mlflow_default = cached
    return str(cached)


def _run(call: Call) -> RunRecord:
    run_id = call.text("run_id", "run_uuid")
    try:
        record: RunRecord = call.store.get_run(run_id)
    except NotFound:
        raise NotFound(f"Run with id={run_id} not found") from None
    return record


def _active(call: Call) -> RunRecord:
    """The run of a write: it exists, the token may change it, and it is not deleted."""
    record = _run(call)
    require_run(call.who, call.store, record.id)
    if record.deleted is not None:
        raise UserError(
            f"The run {record.id} must be in the 'active' state. Current state is deleted."
        )
    return record


def _full(call: Call, record: RunRecord) -> dict[str, Any]:
    return run_json(record, _shown_experiment(call, record), call.store.list_series([record.id]))


def _key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise UserError(f"Missing value for required parameter 'key'. ({what})")
    if len(key) > MAX_KEY:
        raise UserError(
            f"'{key[:50]}...' exceeds the maximum length of {MAX_KEY} characters for the {what} key"
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise UserError(f"Invalid value {key!r} for parameter 'key' supplied: not a path")
    check_name(key, f"{what} key")  # no NUL, control character or lone surrogate
    return key


def _value(value: Any, what: str, limit: int) -> str:
    if value is None:
        value = ""
    if isinstance(value, dict | list):
        raise UserError(f"Invalid value {value!r} for the {what} value: text")
    if not isinstance(value, str):
        value = str(value)
    check_text(value, f"{what} value")
    if len(value) > limit:
        raise UserError(
            f"'{value[:50]}...' exceeds the maximum length of {limit} characters for the "
            f"{what} value"
        )
    return value


def _pairs(items: Any, what: str) -> list[tuple[str, str]]:
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UserError(f"Invalid value for parameter '{what}s' supplied: a list of objects")
    limit = MAX_PARAM_VALUE if what == "param" else MAX_TAG_VALUE
    return [(_key(i.get("key"), what), _value(i.get("value"), what, limit)) for i in items]


# -- runs -----------------------------------------------------------------------------
@rpc("POST", "/mlflow/runs/create", "contributor")
def create(call: Call) -> dict[str, Any]:
    given = call.field("experiment_id")
    experiment = get_experiment(call.store, given if given is not None else "0")
    if experiment.archived is not None:
        raise UserError(
            f"The experiment {given} must be in the 'active' state. Current state is deleted."
        )
    tags = dict(_pairs(call.field("tags"), "tag"))
    name = call.text("run_name", required=False)
    if name and RUN_NAME in tags and tags[RUN_NAME] != name:
        raise UserError(
            f"Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{name}', mlflow.runName='{tags[RUN_NAME]}')."
        )
    name = name or tags.pop(RUN_NAME, None) or None
    tags.pop(RUN_NAME, None)
    parent_id = tags.pop(PARENT, None) or None
    description = tags.pop(NOTE, None) or None
    require_run(call.who, call.store, parent_id)
    submitter = call.who.name
    if call.who.scope_run_id is not None and parent_id is not None:
        submitter = call.store.get_run(parent_id).submitted_by
    new = NewRun(
        id=uuid.uuid4().hex,
        parent_id=parent_id,
        display_name=name,
        description=description,
        type="mlflow",
        target="mlflow",
        tags=dict(tags),
        submitted_by=submitter,
    )
    (record,) = call.store.create_runs(experiment.id, [new])
    return {"run": _full(call, record)}


@rpc("GET", "/mlflow/runs/get", "reader")
def get(call: Call) -> dict[str, Any]:
    return {"run": _full(call, _run(call))}


@rpc("POST", "/mlflow/runs/update", "contributor")
def update(call: Call) -> dict[str, Any]:
    record = _active(call)
    name = call.text("run_name", required=False)
    if name:
        record = call.store.update_run(record.id, display_name=name)
    status = call.field("status")
    if status is not None:
        wanted = STATUS_FROM_MLFLOW[mlflow_status(status)]
        # a finished run stays finished: runyard's terminal statuses are final
        if record.status not in TERMINAL_STATUSES and wanted != record.status:
            record = call.store.set_status(record.id, wanted)
    return {"run_info": run_info(record, _shown_experiment(call, record))}


def _set_deleted(call: Call, deleted: bool) -> dict[str, Any]:
    record = _run(call)
    require_run(call.who, call.store, record.id)
    call.store.set_deleted(record.id, deleted)
    return {}


rpc("POST", "/mlflow/runs/delete", "contributor")(lambda call: _set_deleted(call, True))
rpc("POST", "/mlflow/runs/restore", "contributor")(lambda call: _set_deleted(call, False))


# -- metrics, params, tags --------------------------------------------------------------
def _metric_points(items: list[Any]) -> list[SeriesAppend]:
    """MLflow metrics as one scalar series append per key, in request order."""
    by_key: dict[str, tuple[list[int], list[float], list[float]]] = defaultdict(
        lambda: ([], [], [])
    )
    now = time.time()
    for item in items:
        if not isinstance(item, dict):
            raise UserError("Invalid value for parameter 'metrics' supplied: a list of objects")
        key = _key(item.get("key"), "metric")
        value = number(item.get("value"), "value")
        stamp = integer(item.get("timestamp"), "timestamp", default=round(now * 1000))
        if abs(stamp) > MAX_TIMESTAMP:
            raise UserError(
                f"Invalid value {stamp} for parameter 'timestamp' supplied: runyard keeps "
                f"timestamps of at most {MAX_TIMESTAMP} ms (about 285,000 years)"
            )
        step = integer(item.get("step"), "step", default=0)
        steps, values, times = by_key[key]
        steps.append(step)
        values.append(value)
        times.append(stamp / 1000)
    return [SeriesAppend(k, "scalar", s, v, t) for k, (s, v, t) in by_key.items()]


def _log_params(call: Call, run: RunRecord, params: list[tuple[str, str]]) -> None:
    if not params:
        return
    seen: dict[str, str] = {}
    for key, value in params:
        if key in seen and seen[key] != value:
            raise UserError(
                f"Duplicate parameter keys have been submitted: [{key!r}]. Please ensure the "
                "request contains only one param value per param key."
            )
        seen[key] = value
    try:
        call.store.add_properties(run.id, seen)
    except Conflict as exc:
        key = next((k for k in seen if f"{k!r}" in str(exc)), next(iter(seen)))
        old = run.properties.get(key)
        raise UserError(
            f"Changing param values is not allowed. Param with key='{key}' was already logged "
            f"with value='{old}' for run ID='{run.id}'. Attempted logging new value "
            f"'{seen[key]}'."
        ) from None


def _set_tags(call: Call, run: RunRecord, tags: list[tuple[str, str]]) -> None:
    plain, fields = _tag_changes(run, tags)
    if plain:
        call.store.set_tags(run.id, plain)
    if fields:
        call.store.update_run(run.id, **fields)


def _tag_changes(
    run: RunRecord, tags: list[tuple[str, str]]
) -> tuple[dict[str, str | None], dict[str, str]]:
    """MLflow tags as (runyard tags, run fields), checked; nothing is written."""
    plain: dict[str, str | None] = {}
    fields: dict[str, str] = {}
    for key, value in tags:
        if key in FIELD_TAGS:
            fields[FIELD_TAGS[key]] = value
        elif key == PARENT:
            if value != (run.parent_id or ""):
                raise UserError(
                    f"tag {PARENT} of run {run.id} is its parent, set when the run is "
                    "created; runyard cannot move a run to another parent"
                )
        else:
            plain[key] = value
    return plain, fields


@rpc("POST", "/mlflow/runs/log-metric", "contributor")
def log_metric(call: Call) -> dict[str, Any]:
    run = _active(call)
    fields = {k: call.fields.get(k) for k in ("key", "value", "timestamp", "step")}
    if fields["value"] is None:
        raise UserError("Missing value for required parameter 'value'.")
    call.store.log_batch(run.id, _metric_points([fields]))
    return {}


@rpc("POST", "/mlflow/runs/log-parameter", "contributor")
def log_param(call: Call) -> dict[str, Any]:
    run = _active(call)
    pairs = _pairs([{"key": call.fields.get("key"), "value": call.fields.get("value")}], "param")
    _log_params(call, run, pairs)
    return {}


@rpc("POST", "/mlflow/runs/set-tag", "contributor")
def set_tag(call: Call) -> dict[str, Any]:
    run = _active(call)
    pairs = _pairs([{"key": call.fields.get("key"), "value": call.fields.get("value")}], "tag")
    _set_tags(call, run, pairs)
    return {}


@rpc("POST", "/mlflow/runs/delete-tag", "contributor")
def delete_tag(call: Call) -> dict[str, Any]:
    run = _active(call)
    key = call.text("key")
    assert key is not None
    if key not in run.tags:
        raise NotFound(f"No tag with name: {key} in run with id {run.id}")
    call.store.remove_tags(run.id, [key])
    return {}


@rpc("POST", "/mlflow/runs/log-batch", "contributor")
def log_batch(call: Call) -> dict[str, Any]:
    metrics = call.field("metrics") or []
    params = call.field("params") or []
    tags = call.field("tags") or []
    for items, limit, what in (
        (metrics, MAX_BATCH_METRICS, "metrics"),
        (params, MAX_BATCH_PARAMS, "params"),
        (tags, MAX_BATCH_TAGS, "tags"),
    ):
        if not isinstance(items, list):
            raise UserError(f"Invalid value for parameter '{what}' supplied: a list")
        if len(items) > limit:
            raise UserError(
                f"A batch logging request can contain at most {limit} {what}. Got "
                f"{len(items)} {what}. Please split up {what} across multiple requests and try "
                "again."
            )
    total = len(metrics) + len(params) + len(tags)
    if total > MAX_BATCH_ENTITIES:
        raise UserError(
            f"A batch logging request can contain at most {MAX_BATCH_ENTITIES} metrics, params, "
            f"and tags in total. Got {total} total. Please split up metrics, params, and tags "
            "across multiple requests and try again."
        )
    # everything is checked before anything is stored
    series = _metric_points(metrics)
    param_pairs = _pairs(params, "param")
    tag_pairs = _pairs(tags, "tag")
    run = _active(call)
    _tag_changes(run, tag_pairs)  # a tag that cannot be set refuses the batch before params
    _log_params(call, run, param_pairs)
    _set_tags(call, run, tag_pairs)
    if series:
        call.store.log_batch(run.id, series)
    return {}


@rpc("POST", "/mlflow/runs/log-inputs", "contributor")
def log_inputs(call: Call) -> dict[str, Any]:
    """Datasets and model inputs are accepted and not kept (docs/mlflow.md)."""
    _active(call)
    return {}


@rpc("POST", "/mlflow/runs/outputs", "contributor")
def log_outputs(call: Call) -> dict[str, Any]:
    """Logged-model outputs are accepted and not kept (docs/mlflow.md)."""
    _active(call)
    return {}


# -- search and history -------------------------------------------------------------------
@rpc("POST", "/mlflow/runs/search", "reader")
def search(call: Call) -> dict[str, Any]:
    ids = call.field("experiment_ids") or []
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, list):
        raise UserError("Invalid value for parameter 'experiment_ids' supplied: a list")
    view = str(call.field("run_view_type") or "ACTIVE_ONLY")
    if view not in _VIEWS:
        raise UserError(f"Invalid value {view!r} for parameter 'run_view_type' supplied")
    conditions = tuple(parse_filter(call.field("filter")))
    orders = parse_order(call.field("order_by"))
    count = max_results(call.field("max_results"))
    offset = page_offset(call.field("page_token"))
    experiments = [runyard_id(call.store, i) for i in ids]
    if not experiments:
        return {}
    if len(experiments) > 1:
        conditions += (Condition("attribute", "experiment_id", "IN", tuple(experiments)),)
    conditions += (NOT_A_MODEL,)
    query = RunQuery(
        experiment_id=experiments[0] if len(experiments) == 1 else None,
        conditions=conditions,
        order=orders,
        lifecycle=_VIEWS[view],
    )
    records, series, token = search_page(call.store, query, count, offset)
    default = _default(call)
    runs = []
    for record in records:
        shown = "0" if record.experiment_id == default else record.experiment_id
        runs.append(run_json(record, shown, series[record.id]))
    answer: dict[str, Any] = {"runs": runs} if runs else {}
    if token:
        answer["next_page_token"] = token
    return answer


@rpc("GET", "/mlflow/metrics/get-history", "reader")
def metric_history(call: Call) -> dict[str, Any]:
    run = _run(call)
    key = call.text("metric_key")
    try:
        history = call.store.get_history(run.id, key)
    except NotFound:
        return {"metrics": []}
    offset = page_offset(call.field("page_token"))
    count = max_results(call.field("max_results"), default=2**62, limit=2**62)
    end = min(len(history.values), offset + count)
    metrics = []
    for i in range(offset, end):
        value = history.values[i]
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # a runyard series of text or dicts has no MLflow form
        metrics.append(
            {
                "key": key,
                "value": json_number(float(value)),
                "timestamp": ms(history.times[i]),
                "step": history.steps[i],
            }
        )
    answer: dict[str, Any] = {"metrics": metrics}
    if end < len(history.values):
        answer["next_page_token"] = page_token(end)
    return answer


@rpc("GET", "/mlflow/artifacts/list", "reader")
def list_artifacts(call: Call) -> dict[str, Any]:
    run = _run(call)
    from .artifacts import listing

    path = call.text("path", required=False) or ""
    shown = _shown_experiment(call, run)
    return {
        "root_uri": f"mlflow-artifacts:/{shown}/{run.id}/artifacts",
        "files": listing(call.store, run.id, path),
    }
