"""Metric series on SQL: appended columnar chunks plus a per-series summary row."""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Sequence
from itertools import groupby, pairwise
from operator import itemgetter
from typing import Any

from ...errors import Conflict, UserError
from ...records import Column, MetricHistory, SeriesAppend, SeriesSummary
from . import chunks
from .database import Database, SqlCursor

_UPSERT = """
INSERT INTO metric_series
    (run_id, name, kind, description, count, chunks, last_json, last_number, last_time,
     min_value, max_value)
VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, name) DO UPDATE SET
    count = metric_series.count + excluded.count,
    chunks = metric_series.chunks + 1,
    last_json = excluded.last_json,
    last_number = excluded.last_number,
    last_time = excluded.last_time,
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
    if len(series.steps) != n or len(series.times) != n:
        raise UserError(
            f"metric {series.name!r} of run {run_id}: {n} values, {len(series.steps)} steps "
            f"and {len(series.times)} times; every point needs one of each"
        )
    kinds = _kinds(series.values)
    try:  # before any SQL: what cannot be encoded is the caller's mistake, never retried
        last_value = series.values[-1]
        last = json.dumps(last_value)
        # searches compare and sort by it; NaN is no number (NULL), as SQLite keeps it
        number = float(last_value) if type(last_value) in (int, float) else None
        if number is not None and math.isnan(number):
            number = None
        encoding, packed = chunks.encode_values(series.values, kinds)
        times = chunks.encode_times(series.times)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unstorable(run_id, series, exc) from exc
    low, high = chunks.numeric_range(series.values, kinds)
    kind, count, seq = cur.execute(
        _UPSERT,
        (
            run_id,
            series.name,
            series.kind,
            series.description,
            n,
            last,
            number,
            float(series.times[-1]),
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
    if isinstance(steps, range | array) or None not in steps:  # packed: no None in it
        filled = steps
    elif steps.count(None) == n:
        filled = range(base, base + n)
    else:
        filled = [base + i if s is None else s for i, s in enumerate(steps)]
    try:
        packed_steps = chunks.encode_steps(filled)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unstorable(run_id, series, exc) from exc
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
            packed_steps,
            packed,
            times,
        ),
    )


def _kinds(values: Sequence[Any]) -> set[type]:
    """The types among ``values``; a packed array says it without a look at each value."""
    if isinstance(values, array):
        return {float} if values.typecode == "d" else {int}
    return set(map(type, values))


def _unstorable(run_id: str, series: SeriesAppend, exc: BaseException) -> UserError:
    return UserError(
        f"metric {series.name!r} of run {run_id} has a point that cannot be stored ({exc}): "
        "values are numbers, strings, booleans, None or dicts of them; steps are 64-bit "
        "integers or None; times are numbers"
    )


_LISTED_IDS = 1000  # more ids than this go as one list parameter (PostgreSQL takes 65,535)


def _run_in(db: Database, column: str, ids: Sequence[str]) -> tuple[str, list[Any]]:
    """SQL for "``column`` is one of ``ids``" and its parameters, however many ids."""
    if len(ids) <= _LISTED_IDS:
        return f"{column} IN ({', '.join('?' * len(ids))})", list(ids)
    return db.in_list(column), [db.list_param(ids)]


def list_series(db: Database, run_ids: Sequence[str]) -> list[SeriesSummary]:
    if not run_ids:
        return []
    where, params = _run_in(db, "run_id", run_ids)
    rows = db.read(
        "SELECT run_id, name, kind, description, count, last_json, min_value, max_value, "
        f"last_step, last_time FROM metric_series WHERE {where} ORDER BY run_id, name",
        params,
    )
    return [
        SeriesSummary(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9])
        for r in rows
    ]


def get_histories(
    db: Database,
    run_ids: Sequence[str],
    name: str | None = None,
    values_only: bool = False,
    times: bool = True,
) -> dict[str, list[MetricHistory]]:
    """Every point of every series of ``run_ids`` (or of the series ``name``).

    ``values_only`` leaves steps and times out (empty lists), which ``get_metrics`` never
    shows: they are neither read nor decoded. ``times=False`` leaves the times out (a
    chart's downsample needs steps and values: a third of the bytes of a series fewer).
    """
    if not run_ids:
        return {}
    where, params = _run_in(db, "s.run_id", run_ids)
    extra = ""
    if name is not None:
        extra = " AND s.name = ?"
        params.append(name)
    columns = "c.encoding, c.points"
    if not values_only:
        columns += ", c.steps, c.times" if times else ", c.steps"
    rows = db.read(
        f"SELECT s.run_id, s.name, s.kind, {columns} "
        "FROM metric_series s JOIN metric_chunks c ON c.run_id = s.run_id AND c.name = s.name "
        f"WHERE {where}{extra} ORDER BY s.run_id, s.name, c.seq",
        params,
    )
    result: dict[str, list[MetricHistory]] = {}
    for (run_id, series_name, kind), group in groupby(rows, key=itemgetter(0, 1, 2)):
        parts = list(group)
        packed = [(r[3], bytes(r[4])) for r in parts]
        if values_only:
            history = MetricHistory(series_name, kind, [], _join_values(packed), [])
        else:
            history = MetricHistory(
                series_name,
                kind,
                Column(_join_steps([bytes(r[5]) for r in parts])),
                Column(_join_values(packed, keep_packed=True)),
                Column(chunks.unpack_times(b"".join(bytes(r[6]) for r in parts)) if times else []),
            )
        result.setdefault(run_id, []).append(history)
    return result


def _join_values(parts: list[tuple[str, bytes]], keep_packed: bool = False) -> Sequence[Any]:
    """Decode a series' chunks at once when they share a packed encoding (the usual case)."""
    encodings = {encoding for encoding, _ in parts}
    if len(encodings) == 1 and encodings <= {"f8", "i8"}:
        joined = b"".join(data for _, data in parts)
        encoding = parts[0][0]
        if keep_packed:
            return chunks.unpack_values(encoding, joined)
        return chunks.decode_values(encoding, joined)
    values: list[Any] = []
    for encoding, data in parts:
        values.extend(chunks.decode_values(encoding, data))
    return values


def _join_steps(parts: list[bytes]) -> Sequence[int]:
    """One range when every chunk's steps continue the last one's (the usual case)."""
    pieces = [chunks.unpack_steps(data) for data in parts]
    ranges = [p for p in pieces if isinstance(p, range) and len(p)]
    if len(ranges) == sum(1 for p in pieces if len(p)) and all(
        a.stop == b.start for a, b in pairwise(ranges)
    ):
        return range(ranges[0].start, ranges[-1].stop) if ranges else range(0)
    steps: list[int] = []
    for piece in pieces:
        steps.extend(piece)
    return steps
