"""/api/v1 metric routes: batches in (binary, idempotent), summaries and histories out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ..._validation import check_run_id
from ...errors import UserError
from ...store import wire
from ..app import JSON
from ..auth import Principal, contributor, reader, require_run
from .schemas import HistoriesIn, RunIdsIn, SeriesSummary, Stored, plain

router = APIRouter(tags=["metrics"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.post(
    "/runs/{run_id}/metrics",
    response_model=Stored,
    openapi_extra={"requestBody": {"required": True, "content": {wire.BATCH_TYPE: _BINARY}}},
)
async def log_batch(
    run_id: str,
    request: Request,
    who: Annotated[Principal, Depends(contributor)],
    idempotency_key: Annotated[str | None, Header()] = None,  # checked by the store
) -> Any:
    """Append a metric batch (``application/vnd.runyard.batch``) in one transaction.

    A batch sent again with the same ``Idempotency-Key`` is not stored twice: the answer
    says ``stored: false``. The batch is checked whole before anything is stored.
    """
    check_run_id(run_id)
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != wire.BATCH_TYPE:
        raise UserError(
            f"a metric batch must be sent as {wire.BATCH_TYPE}, not {kind or 'no content type'}"
        )
    body = await request.body()
    store = request.app.state.store
    limit = request.app.state.settings.max_batch_bytes

    def store_it() -> bool:
        require_run(who, store, run_id)
        series = wire.decode_batch(body, max_bytes=limit)
        stored: bool = store.log_batch(run_id, series, key=idempotency_key)
        return stored

    return {"stored": await run_in_threadpool(store_it)}


@router.post("/series", response_model=list[SeriesSummary])
def list_series(
    body: RunIdsIn, request: Request, who: Annotated[Principal, Depends(reader)]
) -> Any:
    """The per-series summary (count, last, min, max, last step) of each run's metrics."""
    return JSON([plain(s) for s in request.app.state.store.list_series(body.run_ids)])


@router.post(
    "/histories",
    response_class=Response,
    responses={200: {"content": {wire.HISTORY_TYPE: _BINARY}, "description": "histories"}},
)
def get_histories(
    body: HistoriesIn, request: Request, who: Annotated[Principal, Depends(reader)]
) -> Response:
    """Every point of the runs' series (only ``name`` if given), binary."""
    found = request.app.state.store.get_histories(body.run_ids, body.name, body.values_only)
    return Response(wire.encode_histories(found), media_type=wire.HISTORY_TYPE)
