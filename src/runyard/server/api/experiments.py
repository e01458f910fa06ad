"""/api/v1/experiments: get-or-create, list, find by name, archive, tags."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from ... import _liveness
from ..._validation import check_name
from ..auth import Principal, admin, contributor, reader
from .schemas import Experiment, ExperimentIn, TagChanges, plain
from .schemas import ExperimentOverview as ExperimentOverviewOut

router = APIRouter(tags=["experiments"])
ViewType = Literal["ActiveOnly", "ArchivedOnly", "All"]


@router.post("/experiments", response_model=Experiment)
def get_or_create(
    body: ExperimentIn, request: Request, who: Annotated[Principal, Depends(reader)]
) -> Any:
    """The active experiment named ``name``, created if there is none (creating needs
    contributor; a reader gets one that exists, as ``Experiment(ws, name)`` asks)."""
    store = request.app.state.store
    if not who.allows("contributor"):
        found = store.find_experiment(body.name)
        if found is None:
            contributor(request)  # the 403 that names the role needed
        return plain(found)
    return plain(store.get_or_create_experiment(body.name))


@router.get("/experiments", response_model=list[Experiment])
def list_experiments(
    request: Request,
    who: Annotated[Principal, Depends(reader)],
    view_type: ViewType = "ActiveOnly",
    name: Annotated[
        str | None, Query(description="only the active experiment of this name")
    ] = None,
) -> Any:
    store = request.app.state.store
    if name is not None:
        found = store.find_experiment(name)
        return [plain(found)] if found is not None else []
    return [plain(e) for e in store.list_experiments(view_type)]


@router.get("/experiments/overview", response_model=list[ExperimentOverviewOut])
def overview(
    request: Request,
    who: Annotated[Principal, Depends(reader)],
    view_type: ViewType = "ActiveOnly",
) -> Any:
    """Experiments with their top-level runs counted by status and the time of their
    latest activity, most recent first."""
    store = request.app.state.store
    _liveness.expire_silent_runs(store, request.app.state.artifacts)
    found = store.experiment_overview(view_type)
    return [{**plain(o), "experiment": plain(o.experiment)} for o in found]


@router.get("/experiments/{experiment_id}", response_model=Experiment)
def get_experiment(
    experiment_id: str, request: Request, who: Annotated[Principal, Depends(reader)]
) -> Any:
    check_name(experiment_id, "experiment id")
    return plain(request.app.state.store.get_experiment(experiment_id))


@router.post("/experiments/{experiment_id}/archive", response_model=Experiment)
def archive(experiment_id: str, request: Request, who: Annotated[Principal, Depends(admin)]) -> Any:
    check_name(experiment_id, "experiment id")
    return plain(request.app.state.store.archive_experiment(experiment_id))


@router.post("/experiments/{experiment_id}/reactivate", response_model=Experiment)
def reactivate(
    experiment_id: str, request: Request, who: Annotated[Principal, Depends(admin)]
) -> Any:
    check_name(experiment_id, "experiment id")
    return plain(request.app.state.store.reactivate_experiment(experiment_id))


@router.patch("/experiments/{experiment_id}/tags", response_model=Experiment)
def change_tags(
    experiment_id: str,
    body: TagChanges,
    request: Request,
    who: Annotated[Principal, Depends(contributor)],
) -> Any:
    store = request.app.state.store
    check_name(experiment_id, "experiment id")
    if body.set:
        store.set_experiment_tags(experiment_id, body.set)
    if body.remove:
        store.remove_experiment_tags(experiment_id, body.remove)
    return plain(store.get_experiment(experiment_id))
