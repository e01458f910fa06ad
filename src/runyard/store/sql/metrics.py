"""Metric series on SQL: appended columnar chunks plus a per-series summary row."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...errors import Conflict
from ...records import MetricHistory, SeriesAppend, SeriesSummary
from . import chunks
from .database import Database, SqlCursor

_UPSERT = """
INSERT INTO metric_series
    (run_id, name, kind, description, count, chunks, last_json, min_value, max_value)
VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)
ON CONFLICT (run_id, name) DO UPDATE SET
    count = metric_series.count + excluded.count,
    chunks = metric_series.chunks + 1,
    last_json = excluded.last_json,
    description = CASE WHEN excluded.description = '' THEN metric_series.description
                       ELSE excluded.description END,
    min_value = CASE WHEN excluded.min_value IS NULL THEN metric_series.min_value
                     WHEN metric_series.min_value IS NULL
                          OR excluded.min_value < metric_series.min_value
                     THEN excluded.min_value ELSE metric_series.min_value END,
    max_value = CASE WHEN excluded.max_value IS NULL THEN metric_series.max_value
                     WHEN metric_series.max_value IS NULL
                          OR excluded.max_value > metric_series.max_value
                     THEN excluded.max_value ELSE metric_series.max_value END
RETURNING kind, count, chunks
"""


def append_series(cur: SqlCursor, run_id: str, series: SeriesAppend) -> None:
    """Append one batch of points to a series inside the caller's transaction."""
    n = len(series.values)
    if n == 0:
        return
    kinds = set(map(type, series.values))
    low, high = chunks.numeric_range(series.values, kinds)
    kind, count, seq = cur.execute(
        _UPSERT,
        (
            run_id,
            series.name,
            series.kind,
            series.description,
            n,
            json.dumps(series.values[-1]),
            low,
            high,
        ),
    )[0]
    if kind != series.kind:
        raise Conflict(
            f"metric {series.name!r} of run {run_id} holds {kind} values; it cannot also take "
            f"{series.kind} values: log them under another name"
        )
    base = count - n
    steps = series.steps
    filled: Sequence[int | None]
    if None not in steps:
        filled = steps
    elif steps.count(None) == n:
        filled = range(base, base + n)
    else:
        filled = [base + i if s is None else s for i, s in enumerate(steps)]
    encoding, packed = chunks.encode_values(series.values, kinds)
    cur.execute(
        "UPDATE metric_series SET last_step = ? WHERE run_id = ? AND name = ?",
        (filled[-1], run_id, series.name),
    )
    cur.execute(
        "INSERT INTO metric_chunks (run_id, name, seq, count, encoding, steps, points, times) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            series.name,
            seq,
            n,
            encoding,
            chunks.encode_steps(filled),
            packed,
            chunks.encode_times(series.times),
        ),
    )


def _in(ids: Sequence[str]) -> str:
    return ", ".join("?" * len(ids))


def list_series(db: Database, run_ids: Sequence[str]) -> list[SeriesSummary]:
    if not run_ids:
        return []
    rows = db.read(
        "SELECT run_id, name, kind, description, count, last_json, min_value, max_value, "
        f"last_step FROM metric_series WHERE run_id IN ({_in(run_ids)}) ORDER BY run_id, name",
        list(run_ids),
    )
    return [
        SeriesSummary(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8])
        for r in rows
    ]


def get_histories(
    db: Database, run_ids: Sequence[str], name: str | None = None
) -> dict[str, list[MetricHistory]]:
    """Every point of every series of ``run_ids`` (or of the series ``name``)."""
    if not run_ids:
        return {}
    params: list[Any] = list(run_ids)
    extra = ""
    if name is not None:
        extra = " AND s.name = ?"
        params.append(name)
    rows = db.read(
        "SELECT s.run_id, s.name, s.kind, c.encoding, c.steps, c.points, c.times "
        "FROM metric_series s JOIN metric_chunks c ON c.run_id = s.run_id AND c.name = s.name "
        f"WHERE s.run_id IN ({_in(run_ids)}){extra} ORDER BY s.run_id, s.name, c.seq",
        params,
    )
    result: dict[str, list[MetricHistory]] = {}
    current: MetricHistory | None = None
    current_run = ""
    for run_id, series_name, kind, encoding, steps, points, times in rows:
        if current is None or (run_id, series_name) != (current_run, current.name):
            current = MetricHistory(series_name, kind, [], [], [])
            current_run = run_id
            result.setdefault(run_id, []).append(current)
        current.steps.extend(chunks.decode_steps(bytes(steps)))
        current.values.extend(chunks.decode_values(encoding, bytes(points)))
        current.times.extend(chunks.decode_times(bytes(times)))
    return result
