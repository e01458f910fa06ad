"""/api/v1/runs: create, read, search, statuses, heartbeats, tags and properties."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ... import _liveness, _ray_jobs
from ..._validation import check_name, check_run_id
from ...errors import UserError
from ...records import (
    POST_PROCESSING_STATUSES,
    RUNNING_STATUSES,
    TERMINAL_STATUSES,
    Condition,
    NewRun,
    Order,
    RunQuery,
)
from ...run_filter import parse_run_filter
from ...store import _json
from ..app import JSON
from ..auth import Principal, contributor, reader, require_run
from .schemas import (
    Count,
    Expired,
    ExpireIn,
    HeartbeatIn,
    NewRunsIn,
    PropertiesIn,
    Run,
    RunQueryIn,
    RunUpdate,
    SearchCountIn,
    SearchIn,
    StatusChange,
    StatusIn,
    SupervisedRun,
    TagChanges,
    plain,
)

router = APIRouter(tags=["runs"])
_CANCELABLE = (*RUNNING_STATUSES, *POST_PROCESSING_STATUSES)
Reader = Annotated[Principal, Depends(reader)]
Contributor = Annotated[Principal, Depends(contributor)]


@router.post("/experiments/{experiment_id}/runs", response_model=list[Run])
def create_runs(experiment_id: str, body: NewRunsIn, request: Request, who: Contributor) -> Any:
    """Create runs in one transaction; each records the token's name as its submitter
    (a run-scoped token's runs take their parent's submitter)."""
    check_name(experiment_id, "experiment id")
    store = request.app.state.store
    submitter: dict[str | None, str | None] = {}
    new = []
    for run in body.runs:
        if who.scope_run_id is not None:
            require_run(who, store, run.parent_id)
            if run.parent_id not in submitter:
                submitter[run.parent_id] = _submitter_of(store, run.parent_id, who)
            by = submitter[run.parent_id]
        else:
            by = who.name
        fields = run.model_dump()
        fields["run_definition"] = _json.untag(fields["run_definition"])
        new.append(NewRun(**fields, submitted_by=by))
    return JSON([plain(r) for r in store.create_runs(experiment_id, new)])


def _submitter_of(store: Any, parent_id: str | None, who: Principal) -> Any:
    """Who submitted ``parent_id`` (which exists: the store takes only existing parents)."""
    return who.name if parent_id is None else store.get_run(parent_id).submitted_by


@router.get("/runs/{run_id}", response_model=Run)
def get_run(run_id: str, request: Request, who: Reader) -> Any:
    """The run as it is, the liveness rule applied (a run whose supervisor went silent is
    NotResponding, then Failed, for every reader)."""
    check_run_id(run_id)
    store = request.app.state.store
    _liveness.expire_silent_runs(store, request.app.state.artifacts, run_id)
    return plain(store.get_run(run_id))


@router.post("/runs/search", response_model=list[Run])
def search_runs(body: SearchIn, request: Request, who: Reader) -> Any:
    """Runs matching ``query`` (and ``filter``, runyard's run filter text), newest first
    unless ``query.order`` says otherwise; ``after`` (created, number) starts below that
    run, for the next page, or ``offset`` skips runs."""
    store = request.app.state.store
    query = _query(body.query, body.filter)
    _liveness.expire_silent_runs(store, request.app.state.artifacts)
    runs = store.search_runs(query, after=body.after, limit=body.limit, offset=body.offset)
    return JSON([plain(r) for r in runs])  # as stored: no second check of each field


@router.post("/runs/count", response_model=Count)
def count_runs(body: SearchCountIn, request: Request, who: Reader) -> Any:
    """How many runs match ``query`` and ``filter``, every page of them."""
    store = request.app.state.store
    query = _query(body.query, body.filter)
    _liveness.expire_silent_runs(store, request.app.state.artifacts)
    return {"count": store.count_runs(query)}


def _query(body: RunQueryIn, text: str | None) -> RunQuery:
    fields = body.model_dump()
    fields["conditions"] = tuple(
        Condition(**{**c, "value": _json.untag(c["value"])}) for c in fields["conditions"]
    ) + parse_run_filter(text)
    fields["order"] = tuple(Order(**o) for o in fields["order"])
    return RunQuery(**fields)


@router.get("/runs/{run_id}/statuses", response_model=list[StatusChange])
def status_history(run_id: str, request: Request, who: Reader) -> Any:
    """Every status the run took, oldest first, with its time."""
    check_run_id(run_id)
    return [plain(c) for c in request.app.state.store.status_history(run_id)]


@router.post("/runs/{run_id}/cancel", response_model=Run)
def cancel_run(run_id: str, request: Request, who: Contributor) -> Any:
    """Cancel a run as ``Run.cancel()`` does: a script run whose supervisor is alive
    becomes CancelRequested (its processes are stopped, then it is Canceled); any other
    run Canceled at once. A finished run is a 400."""
    check_run_id(run_id)
    store = request.app.state.store
    require_run(who, store, run_id)
    _liveness.expire_silent_runs(store, request.app.state.artifacts, run_id)
    run = store.get_run(run_id)
    if run.status not in TERMINAL_STATUSES:
        run = store.set_status(run_id, _liveness.cancel_status(run), only_from=_CANCELABLE)
        name = run.properties.get(_ray_jobs.PROPERTY)
        if run.status == "CancelRequested" and name:  # a run in a Ray cluster's queue
            _ray_jobs.stop_pending(name, run_id, _ray_jobs.attached(store))
    if run.status not in ("CancelRequested", "Canceled"):
        raise UserError(f"run {run_id} is already {run.status}; a finished run cannot be canceled")
    return plain(run)


@router.post("/runs/{run_id}/delete", response_model=Run)
def delete_run(run_id: str, request: Request, who: Contributor) -> Any:
    """Soft-delete a run (MLflow's delete): searches leave it out until it is restored."""
    check_run_id(run_id)
    require_run(who, request.app.state.store, run_id)
    return plain(request.app.state.store.set_deleted(run_id, True))


@router.post("/runs/{run_id}/restore", response_model=Run)
def restore_run(run_id: str, request: Request, who: Contributor) -> Any:
    check_run_id(run_id)
    require_run(who, request.app.state.store, run_id)
    return plain(request.app.state.store.set_deleted(run_id, False))


@router.patch("/runs/{run_id}", response_model=Run)
def update_run(run_id: str, body: RunUpdate, request: Request, who: Contributor) -> Any:
    check_run_id(run_id)
    store = request.app.state.store
    require_run(who, store, run_id)
    fields = _json.untag(body.model_dump(exclude_unset=True))
    return plain(store.update_run(run_id, **fields))


@router.post("/runs/{run_id}/status", response_model=Run)
def set_status(run_id: str, body: StatusIn, request: Request, who: Contributor) -> Any:
    """Move a run to ``status`` unless it is finished (or its status is not in
    ``only_from``); the run as it is afterwards."""
    check_run_id(run_id)
    store = request.app.state.store
    require_run(who, store, run_id)
    error = _json.untag(body.error)
    return plain(store.set_status(run_id, body.status, error=error, only_from=body.only_from))


@router.post("/runs/{run_id}/heartbeat", status_code=204)
def heartbeat(run_id: str, body: HeartbeatIn, request: Request, who: Contributor) -> None:
    check_run_id(run_id)
    store = request.app.state.store
    require_run(who, store, run_id)
    store.heartbeat(run_id, body.status, supervisor=body.supervisor)


@router.get("/supervised-runs", response_model=list[SupervisedRun])
def supervised_runs(
    request: Request,
    who: Reader,
    late_after: Annotated[float, Query(ge=0)],
    include: str | None = None,
) -> Any:
    """Unfinished supervised runs silent for ``late_after`` seconds (and ``include``)."""
    runs = request.app.state.store.supervised_runs(late_after, include=include)
    return [plain(r) for r in runs]


@router.post("/runs/expire-silent", response_model=Expired)
def expire_silent_runs(body: ExpireIn, request: Request, who: Reader) -> Any:
    """Mark runs whose heartbeat stopped NotResponding, then Failed.

    Every reader applies the liveness rule, so any token may ask. A caller that may not
    change every run (a reader, a run's token) gets the server's own thresholds at the
    least: it cannot fail runs beyond its reach by asking for tiny ones."""
    late_after, fail_after = body.not_responding_after, body.fail_after
    if who.scope_run_id is not None or not who.allows("contributor"):
        late_after = max(late_after, _liveness.not_responding_seconds())
        fail_after = max(fail_after, _liveness.failed_seconds())
    count = request.app.state.store.expire_silent_runs(late_after, fail_after, spare=body.spare)
    return {"expired": count}


@router.patch("/runs/{run_id}/tags", response_model=Run)
def change_tags(run_id: str, body: TagChanges, request: Request, who: Contributor) -> Any:
    check_run_id(run_id)
    store = request.app.state.store
    require_run(who, store, run_id)
    if body.set:
        store.set_tags(run_id, body.set)
    if body.remove:
        store.remove_tags(run_id, body.remove)
    return plain(store.get_run(run_id))


@router.post("/runs/{run_id}/properties", response_model=Run)
def add_properties(run_id: str, body: PropertiesIn, request: Request, who: Contributor) -> Any:
    """Add properties; a key already set to another value is a Conflict."""
    check_run_id(run_id)
    store = request.app.state.store
    require_run(who, store, run_id)
    store.add_properties(run_id, body.properties)
    return plain(store.get_run(run_id))
