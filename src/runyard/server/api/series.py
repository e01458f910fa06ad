"""/api/v1/runs/{id}/series: one series as JSON, for pages and widgets.

``/series/sampled`` answers a chart: a numeric series downsampled to the chart's width
(min and max per pixel column, see ``runyard.server.downsample``), optionally within a
range of steps, so a zoomed chart asks for finer points. ``/series/points`` answers the
rest (lists, tables, images, the JSON chart kinds) a page of points at a time.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from ..._downsample import MAX_WIDTH, sample
from ..._validation import check_name, check_run_id
from ...errors import UserError
from ..app import JSON
from ..auth import Principal, reader
from .schemas import SampledSeries, SeriesPoints

router = APIRouter(tags=["metrics"])
Reader = Annotated[Principal, Depends(reader)]
MAX_POINTS = 10_000
_NUMERIC = ("scalar", "list")


@router.get("/runs/{run_id}/series/sampled", response_model=SampledSeries)
async def sampled_series(
    run_id: str,
    request: Request,
    who: Reader,
    name: Annotated[str, Query(description="the metric's name")],
    width: Annotated[int, Query(ge=1, le=MAX_WIDTH, description="the chart's width")] = 1000,
    start: Annotated[float | None, Query(description="the first step to show")] = None,
    end: Annotated[float | None, Query(description="the last step to show")] = None,
) -> Any:
    """A numeric series (``log`` or ``log_list``) as at most two points per pixel column:
    the lowest and the highest value of the points in it, at their own steps."""
    check_run_id(run_id)
    check_name(name, "metric name")
    store = request.app.state.store

    def read() -> dict[str, Any]:
        history = store.get_history(run_id, name)
        if history.kind not in _NUMERIC:
            raise UserError(
                f"metric {name!r} of run {run_id} holds {history.kind} values, not numbers; "
                "read it with /series/points"
            )
        try:
            steps, values, count = sample(history.steps, history.values, width, start, end)
        except (TypeError, ValueError):
            raise UserError(
                f"metric {name!r} of run {run_id} holds values that are not numbers; read it "
                "with /series/points"
            ) from None
        return {
            "name": name,
            "kind": history.kind,
            "count": count,
            "total": len(history.steps),
            "sampled": len(steps) < count,
            "steps": steps,
            "values": values,
        }

    return JSON(await run_in_threadpool(read))


@router.get("/runs/{run_id}/series/points", response_model=SeriesPoints)
def series_points(
    run_id: str,
    request: Request,
    who: Reader,
    name: Annotated[str, Query(description="the metric's name")],
    offset: Annotated[int, Query(ge=0, le=2**62, description="points to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS, description="points to return")] = 1000,
) -> Any:
    """A page of one series' points as they were logged: steps, values (numbers, texts,
    table rows, or artifact paths for images and charts) and times."""
    check_run_id(run_id)
    check_name(name, "metric name")
    history = request.app.state.store.get_history(run_id, name)
    end = offset + limit
    return JSON(
        {
            "name": name,
            "kind": history.kind,
            "total": len(history.steps),
            "offset": offset,
            "steps": list(history.steps[offset:end]),
            "values": list(history.values[offset:end]),
            "times": list(history.times[offset:end]),
        }
    )
