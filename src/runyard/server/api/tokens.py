"""/api/v1/tokens (admin), /api/v1/whoami and /api/v1/runs/{run_id}/token.

A token's secret is in the answer of its creation only; listings never hold it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from ...store.sql.tokens import TokenRecord
from ..auth import Principal, admin, contributor, reader, require_run

router = APIRouter(tags=["tokens"])
Role = Literal["reader", "contributor", "admin"]
State = Literal["active", "expired", "revoked"]


class TokenIn(BaseModel):
    """A token to create; ``expires_in_seconds`` absent or null: it never expires."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: Role
    expires_in_seconds: float | None = Field(default=None, gt=0, le=100 * 365 * 86400)


class Token(BaseModel):
    """A token as stored (no secret). Times are Unix seconds."""

    name: str
    role: Role
    scope_run_id: str | None
    created_by: str | None
    created: float
    expires: float | None
    revoked: float | None
    last_used: float | None
    state: State


class NewToken(Token):
    """A created token with its secret: shown this once, never stored."""

    token: str


class RunToken(BaseModel):
    name: str
    token: str
    expires: float | None


class WhoAmI(BaseModel):
    name: str
    role: Role
    scope_run_id: str | None


def _out(record: TokenRecord, now: float) -> dict[str, Any]:
    """A token as the API shows it; its state by ``now``, the database's clock (the one
    every server decides expiry by)."""
    fields = {name: getattr(record, name) for name in record.__dataclass_fields__}
    return {**fields, "state": record.state(now)}


@router.post("/tokens", response_model=NewToken, status_code=201)
def create_token(body: TokenIn, request: Request, who: Annotated[Principal, Depends(admin)]) -> Any:
    """Create a token; its secret is in this answer only."""
    store = request.app.state.store
    now = store.database_now()
    expires = None if body.expires_in_seconds is None else now + body.expires_in_seconds
    record, secret = store.create_token(body.name, body.role, expires=expires, created_by=who.name)
    return {**_out(record, now), "token": secret}


@router.get("/tokens", response_model=list[Token])
def list_tokens(request: Request, who: Annotated[Principal, Depends(admin)]) -> Any:
    """Every token (active, expired, revoked), without secrets."""
    store = request.app.state.store
    now = store.database_now()
    return [_out(r, now) for r in store.list_tokens()]


@router.delete("/tokens/{name}", response_model=Token)
def revoke_token(name: str, request: Request, who: Annotated[Principal, Depends(admin)]) -> Any:
    """Revoke a token (and the run tokens minted with it); refused from its next request."""
    store = request.app.state.store
    return _out(store.revoke_token(name), store.database_now())


@router.get("/whoami", response_model=WhoAmI)
def whoami(who: Annotated[Principal, Depends(reader)]) -> Any:
    """The caller's token name, role and run scope (any valid token)."""
    return {"name": who.name, "role": who.role, "scope_run_id": who.scope_run_id}


@router.post("/runs/{run_id}/token", response_model=RunToken, status_code=201)
def run_token(
    run_id: str, request: Request, who: Annotated[Principal, Depends(contributor)]
) -> Any:
    """A contributor token limited to this run and its descendants, for the run's script."""
    store = request.app.state.store
    require_run(who, store, run_id)
    store.get_run(run_id)  # NotFound for a run that does not exist
    secret = store.create_run_token(run_id, who.name)
    record = store.find_token(secret)
    return {"name": record.name, "token": secret, "expires": record.expires}
