"""The figures measured on any workspace: embedded (run.py) and through a server (server.py)."""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from collections.abc import Callable

from runyard import Experiment, Workspace
from runyard.records import NewRun

QUICK = "--quick" in sys.argv
POINTS = 100_000 if QUICK else 1_000_000
RUNS = 2_000 if QUICK else 20_000


def log_points(ws: Workspace) -> tuple[float, float, float]:
    run = Experiment(ws, "bench-log").start_logging(snapshot_directory=None, outputs=False)
    log = run.log
    start = time.perf_counter()
    for i in range(POINTS):
        log("loss", i * 0.001, step=i)
    run.flush()
    rate = POINTS / (time.perf_counter() - start)
    reads, values = [], []
    for _ in range(5):
        start = time.perf_counter()
        history = run.get_metric_history("loss")
        reads.append(time.perf_counter() - start)
        assert len(history.values) == POINTS
        start = time.perf_counter()
        metrics = run.get_metrics(name="loss")
        values.append(time.perf_counter() - start)
        assert len(metrics["loss"]) == POINTS
        del history, metrics
    run.complete()
    return rate, statistics.median(reads), statistics.median(values)


def create_runs(ws: Workspace) -> tuple[float, float, float]:
    """Median ms of ``start_logging``, of one store-level ``create_runs``, and of
    ``create_children(100)``."""
    exp = Experiment(ws, "bench-create")
    exp.start_logging(snapshot_directory=None, outputs=False).complete()  # warm up
    times = []
    for _ in range(200):
        start = time.perf_counter()
        run = exp.start_logging(snapshot_directory=None, outputs=False)
        times.append(time.perf_counter() - start)
        run.complete()
    store_times = []
    for _ in range(200):
        start = time.perf_counter()
        ws._store.create_runs(exp.id, [NewRun(id=str(uuid.uuid4()))])
        store_times.append(time.perf_counter() - start)
    parent = exp.start_logging(snapshot_directory=None, outputs=False)
    children = []
    for _ in range(20):
        start = time.perf_counter()
        made = parent.create_children(100)
        children.append(time.perf_counter() - start)
        for child in made:
            child.complete()
    parent.complete()
    ms = 1000
    return (
        statistics.median(times) * ms,
        statistics.median(store_times) * ms,
        statistics.median(children) * ms,
    )


def query_runs(ws: Workspace, analyze: Callable[[], None] | None = None) -> tuple[float, int]:
    """Median ms of ``get_runs`` with a tag and a property filter over ``RUNS`` runs; how
    many it found. ``analyze`` gathers PostgreSQL's table statistics after the load."""
    exp = Experiment(ws, "bench-query")
    store = ws._store
    batch = 1000
    for first in range(0, RUNS, batch):
        store.create_runs(
            exp.id,
            [
                NewRun(
                    id=str(uuid.uuid4()),
                    tags={"group": str(i % 5), "note": None},
                    properties={"owner": f"user{i % 2}"},
                )
                for i in range(first, first + batch)
            ],
        )
    if analyze is not None:
        # PostgreSQL plans from table statistics; autovacuum gathers them within a minute
        # of a bulk load. Gather them now rather than wait (docs/benchmarks.md has the
        # figure for a freshly loaded, never analysed table).
        analyze()
    found = list(exp.get_runs(tags={"group": "3"}, properties={"owner": "user1"}))
    times = []
    for _ in range(10):
        start = time.perf_counter()
        found = list(exp.get_runs(tags={"group": "3"}, properties={"owner": "user1"}))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, len(found)
