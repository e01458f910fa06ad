"""MLflow's experiment RPCs. MLflow's experiment "0" is runyard's experiment "Default";
deleting an experiment archives it, restoring reactivates it (both need an admin token,
as archiving does in runyard)."""

from __future__ import annotations

import re
from typing import Any

from ...errors import NotFound, UserError
from ...records import ExperimentRecord
from ._rpc import AlreadyExists, Call, rpc
from .convert import DEFAULT_EXPERIMENT, experiment_json
from .search import max_results, page_offset, page_token

_VIEW_TYPES = {
    "ACTIVE_ONLY": "ActiveOnly",
    "DELETED_ONLY": "ArchivedOnly",
    "ALL": "All",
    "1": "ActiveOnly",
    "2": "ArchivedOnly",
    "3": "All",
}


def default_id(store: Any) -> str:
    """The runyard id of MLflow's experiment "0" (created on first use)."""
    found = store.find_experiment(DEFAULT_EXPERIMENT)
    if found is None:
        found = store.get_or_create_experiment(DEFAULT_EXPERIMENT)
    return str(found.id)


def mlflow_id(store: Any, experiment_id: str) -> str:
    """The id MLflow's face shows for the runyard experiment ``experiment_id`` ("0" for the
    Default experiment), without creating anything."""
    found = store.find_experiment(DEFAULT_EXPERIMENT)
    return "0" if found is not None and found.id == experiment_id else experiment_id


def runyard_id(store: Any, experiment_id: Any) -> str:
    """The runyard id of an MLflow experiment id ("0" is the Default experiment)."""
    if not isinstance(experiment_id, str | int) or isinstance(experiment_id, bool):
        raise UserError(f"Invalid value {experiment_id!r} for parameter 'experiment_id'")
    text = str(experiment_id)
    return default_id(store) if text == "0" else text


def shown_id(store: Any, record: ExperimentRecord, default: str | None = None) -> str:
    """The id MLflow's face shows for ``record`` ("0" for the Default experiment)."""
    if record.name != DEFAULT_EXPERIMENT or record.archived is not None:
        return record.id
    return "0" if record.id == (default or default_id(store)) else record.id


def get_experiment(store: Any, experiment_id: Any) -> ExperimentRecord:
    try:
        record: ExperimentRecord = store.get_experiment(runyard_id(store, experiment_id))
    except NotFound:
        raise NotFound(f"No Experiment with id={experiment_id} exists") from None
    return record


@rpc("POST", "/mlflow/experiments/create", "contributor")
def create(call: Call) -> dict[str, Any]:
    name = call.text("name")
    # artifact_location is never used: the server decides where files go (and never opens
    # a location a client supplied)
    if call.store.find_experiment(name) is not None:
        raise AlreadyExists(f"Experiment(name={name}) already exists.")
    record = call.store.get_or_create_experiment(name)
    tags = _tags(call.field("tags"))
    if tags:
        call.store.set_experiment_tags(record.id, tags)
    return {"experiment_id": shown_id(call.store, record)}


def _tags(items: Any) -> dict[str, str | None]:
    if items is None:
        return {}
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        raise UserError("Invalid value for parameter 'tags' supplied: a list of {key, value}")
    tags = {}
    for item in items:
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str) or not isinstance(value, str | None):
            raise UserError(f"Invalid tag {item!r}: key and value are text")
        tags[key] = value
    return tags


@rpc("GET", "/mlflow/experiments/get", "reader")
def get(call: Call) -> dict[str, Any]:
    record = get_experiment(call.store, call.required("experiment_id"))
    return {"experiment": experiment_json(record, shown_id(call.store, record))}


@rpc("GET", "/mlflow/experiments/get-by-name", "reader")
def get_by_name(call: Call) -> dict[str, Any]:
    name = call.text("experiment_name")
    record = call.store.find_experiment(name)
    if record is None:
        raise NotFound(f"Could not find experiment with name '{name}'")
    return {"experiment": experiment_json(record, shown_id(call.store, record))}


def _search(call: Call) -> dict[str, Any]:
    view = str(call.field("view_type") or "ACTIVE_ONLY")
    if view not in _VIEW_TYPES:
        raise UserError(f"Invalid value {view!r} for parameter 'view_type' supplied")
    default = default_id(call.store)  # MLflow's experiment "0" always exists
    records = call.store.list_experiments(_VIEW_TYPES[view])
    shown = [experiment_json(r, shown_id(call.store, r, default)) for r in records]
    for clause in _experiment_clauses(call.field("filter")):
        shown = [e for e in shown if clause(e)]
    orders = call.field("order_by") or []
    if isinstance(orders, str):
        orders = [orders]
    shown.sort(key=lambda e: (-e["creation_time"], e["experiment_id"]))  # newest first
    for order in reversed(orders):
        field, _, direction = str(order).strip().partition(" ")
        field = field.removeprefix("attributes.").removeprefix("attribute.")
        if field not in ("name", "experiment_id", "creation_time", "last_update_time"):
            raise UserError(f"Invalid order_by clause {order!r}")
        descending = direction.strip().upper() == "DESC"
        shown.sort(key=lambda e, f=field: e[f], reverse=descending)  # type: ignore[misc]
    offset = page_offset(call.field("page_token"))
    count = max_results(call.field("max_results"), default=1000)
    page = shown[offset : offset + count]
    answer: dict[str, Any] = {"experiments": page}
    if offset + count < len(shown):
        answer["next_page_token"] = page_token(offset + count)
    return answer


rpc("GET", "/mlflow/experiments/search", "reader")(_search)
rpc("POST", "/mlflow/experiments/search", "reader")(_search)

_CLAUSE = re.compile(
    r"""\s*(?:attributes?\.)?(?P<field>name|tags?\.(?:`[^`]+`|"[^"]+"|[\w.\-]+))\s*
    (?P<op>!=|=|LIKE|ILIKE)\s*(?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*")\s*(?:AND\s+|$)""",
    re.IGNORECASE | re.VERBOSE,
)


def _experiment_clauses(text: Any) -> list[Any]:
    """MLflow's experiment filter (name and tags, =, !=, LIKE, ILIKE, joined by AND)."""
    if not text:
        return []
    if not isinstance(text, str):
        raise UserError("Invalid value for parameter 'filter' supplied: text")
    clauses, at = [], 0
    while at < len(text.rstrip()):
        match = _CLAUSE.match(text, at)
        if match is None:
            raise UserError(f"Invalid filter {text!r}: experiments filter on name and tags")
        clauses.append(_clause(match))
        at = match.end()
    return clauses


def _clause(match: re.Match[str]) -> Any:
    field, op = match["field"], match["op"].upper()
    quoted = match["value"]
    value = quoted[1:-1].replace(quoted[0] * 2, quoted[0])
    key = None
    if field.lower() != "name":
        key = field.split(".", 1)[1].strip('`"')

    def read(e: dict[str, Any]) -> str | None:
        if key is None:
            return str(e["name"])
        return next((t["value"] for t in e["tags"] if t["key"] == key), None)

    if op in ("LIKE", "ILIKE"):
        pattern = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in value)
        flags = re.IGNORECASE | re.DOTALL if op == "ILIKE" else re.DOTALL
        return lambda e: (v := read(e)) is not None and re.fullmatch(pattern, v, flags)
    if op == "!=":
        return lambda e: (v := read(e)) is not None and v != value
    return lambda e: read(e) == value


@rpc("POST", "/mlflow/experiments/delete", "admin")
def delete(call: Call) -> dict[str, Any]:
    record = get_experiment(call.store, call.required("experiment_id"))
    if record.archived is None:
        call.store.archive_experiment(record.id)
    return {}


@rpc("POST", "/mlflow/experiments/restore", "admin")
def restore(call: Call) -> dict[str, Any]:
    record = get_experiment(call.store, call.required("experiment_id"))
    if record.archived is not None:
        call.store.reactivate_experiment(record.id)
    return {}


@rpc("POST", "/mlflow/experiments/set-experiment-tag", "contributor")
def set_tag(call: Call) -> dict[str, Any]:
    record = get_experiment(call.store, call.required("experiment_id"))
    key = call.text("key")
    value = call.text("value", required=False) or ""
    assert key is not None
    call.store.set_experiment_tags(record.id, {key: value})
    return {}


@rpc("POST", "/mlflow/experiments/delete-experiment-tag", "contributor")
def delete_tag(call: Call) -> dict[str, Any]:
    record = get_experiment(call.store, call.required("experiment_id"))
    key = call.text("key")
    assert key is not None
    call.store.remove_experiment_tags(record.id, [key])
    return {}
