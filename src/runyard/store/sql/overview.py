"""What the studio shows at a glance: experiments with their runs counted by status, a
run search's number of matches, and a run's status history."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ...records import ExperimentOverview, ExperimentRecord, RunQuery, StatusChange
from . import run_search
from .database import Database

# a run's last sign of life: its end, else its heartbeat, else its start or creation
_LAST_ACTIVITY = "MAX(COALESCE(ended_at, heartbeat_at, started_at, created_at))"


def experiment_overview(
    db: Database, experiments: list[ExperimentRecord]
) -> list[ExperimentOverview]:
    """Each experiment with its top-level runs (not deleted) counted by status, and the
    time of the latest activity among them; newest activity first."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    latest: dict[str, float] = {}
    rows = db.read(
        f"SELECT experiment_id, status, COUNT(*), {_LAST_ACTIVITY} FROM runs "
        "WHERE parent_id IS NULL AND deleted_at IS NULL GROUP BY experiment_id, status"
    )
    for experiment_id, status, count, last in rows:
        counts[experiment_id][status] = int(count)
        if last is not None and last > latest.get(experiment_id, float("-inf")):
            latest[experiment_id] = float(last)
    found = [
        ExperimentOverview(
            e, sum(counts[e.id].values()), dict(counts[e.id]), latest.get(e.id, e.created)
        )
        for e in experiments
    ]
    found.sort(key=lambda o: o.last_activity or 0.0, reverse=True)
    return found


def count_runs(db: Database, query: RunQuery, source: str) -> int:
    """How many runs match ``query`` (every page of it)."""
    found = run_search.search_sql(
        db, query, "COUNT(*)", source, after=None, limit=0, offset=0, count=True
    )
    if found is None:
        return 0
    rows: list[Any] = db.read(*found)
    return int(rows[0][0])


def status_history(db: Database, run_id: str) -> list[StatusChange]:
    """Every status the run took, oldest first (runs older than schema 8 have only the
    status they had then)."""
    rows = db.read(
        "SELECT status, at FROM run_status_changes WHERE run_id = ? ORDER BY seq",
        (run_id,),
    )
    return [StatusChange(status, float(at)) for status, at in rows]
