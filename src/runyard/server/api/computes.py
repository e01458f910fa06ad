"""/api/v1/computes: the compute targets attached to the workspace.

Anyone with a token reads them (a submitter needs the address); attaching and detaching
take an admin's token.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..auth import Principal, admin, reader
from .schemas import plain

router = APIRouter(tags=["computes"])


class ComputeIn(BaseModel):
    """A compute target to attach: ``address`` is the Ray dashboard's URL."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    type: Literal["ray"]
    address: str = Field(min_length=1, max_length=2000)


class Compute(BaseModel):
    name: str
    type: str
    address: str
    created: float
    created_by: str | None


@router.get("/computes", response_model=list[Compute])
def list_computes(request: Request, who: Annotated[Principal, Depends(reader)]) -> Any:
    return [plain(c) for c in request.app.state.store.list_computes()]


@router.get("/computes/{name}", response_model=Compute)
def get_compute(name: str, request: Request, who: Annotated[Principal, Depends(reader)]) -> Any:
    return plain(request.app.state.store.get_compute(name))


@router.post("/computes", response_model=Compute, status_code=201)
def attach_compute(
    body: ComputeIn, request: Request, who: Annotated[Principal, Depends(admin)]
) -> Any:
    store = request.app.state.store
    return plain(store.attach_compute(body.name, body.type, body.address, created_by=who.name))


@router.delete("/computes/{name}", status_code=204)
def detach_compute(
    name: str, request: Request, who: Annotated[Principal, Depends(admin)]
) -> Response:
    request.app.state.store.detach_compute(name)
    return Response(status_code=204)
