"""/api/v1/runs/{id}/series: one series as JSON, for pages and widgets.

``/series/sampled`` answers a chart: a numeric series downsampled to the chart's width
(min and max per pixel column, see ``runyard.server.downsample``), optionally within a
range of steps, so a zoomed chart asks for finer points. ``/series/points`` answers the
rest (lists, tables, images, the JSON chart kinds) a page of points at a time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Annotated, Any

import numpy
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from ..._downsample import MAX_WIDTH, sample
from ..._validation import check_name, check_run_id
from ...errors import NotFound, UserError
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
        kind, steps, values = recent_series(request.app).get(store, run_id, name)
        found, kept, count = sample(steps, values, width, start, end)
        return {
            "name": name,
            "kind": kind,
            "count": count,
            "total": len(steps),
            "sampled": len(found) < count,
            "steps": found,
            "values": kept,
        }

    return JSON(await run_in_threadpool(read))


class RecentSeries:
    """The numeric series read last for charts, as arrays, up to ``max_points`` in all.

    A chart asks again on every zoom; a series only grows, so one whose number of points
    is unchanged is the same series and is not read again (a million points take 40 to
    80 ms to read, 10 ms to downsample).
    """

    def __init__(self, max_points: int = 4_000_000) -> None:
        self.max_points = max_points
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, str], tuple[int, str, Any, Any]] = OrderedDict()

    def get(self, store: Any, run_id: str, name: str) -> tuple[str, Any, Any]:
        """(kind, steps, values) of the series, steps sorted; a UserError if it is not
        numbers, NotFound if there is no such series."""
        summary = next((s for s in store.list_series([run_id]) if s.name == name), None)
        if summary is None:
            store.get_run(run_id)  # NotFound for a run that does not exist
            raise NotFound(f"run {run_id} has no metric named {name!r}")
        if summary.kind not in _NUMERIC:
            raise UserError(
                f"metric {name!r} of run {run_id} holds {summary.kind} values, not numbers; "
                "read it with /series/points"
            )
        key = (run_id, name)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] == summary.count:
                self._kept.move_to_end(key)
                return kept[1], kept[2], kept[3]
        history = store.get_history(run_id, name, times=False)
        try:
            steps = numpy.asarray(history.steps, dtype=numpy.int64)
            values = numpy.asarray(history.values, dtype=numpy.float64)
        except (TypeError, ValueError):
            raise UserError(
                f"metric {name!r} of run {run_id} holds values that are not numbers; read it "
                "with /series/points"
            ) from None
        if steps.size > 1 and bool(numpy.any(steps[1:] < steps[:-1])):
            order = numpy.argsort(steps, kind="stable")
            steps, values = steps[order], values[order]
        with self._lock:
            self._kept[key] = (steps.size, history.kind, steps, values)
            self._kept.move_to_end(key)
            total = sum(k[0] for k in self._kept.values())
            while total > self.max_points and len(self._kept) > 1:
                _, dropped = self._kept.popitem(last=False)
                total -= dropped[0]
        return history.kind, steps, values


def recent_series(app: Any) -> RecentSeries:
    """The app's own RecentSeries (one per server: each app has its store)."""
    with _MAKING:
        if not hasattr(app.state, "recent_series"):
            app.state.recent_series = RecentSeries()
    found: RecentSeries = app.state.recent_series
    return found


_MAKING = threading.Lock()


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
