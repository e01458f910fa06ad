"""The stock MLflow client against runyard's MLflow face and against MLflow's own server.

Both are real subprocesses on 127.0.0.1: ``runyard serve`` over SQLite with auth on (a
contributor token), and ``mlflow server`` over SQLite. The same client calls measure:

- per-call ``mlflow.log_metric`` (synchronous) and asynchronous logging, in points/s;
- ``MlflowClient.create_run``, median ms;
- ``search_runs`` with a metric filter and order (1,000 results) over an experiment of
  20,000 runs, median ms. Each side's runs are loaded the fastest honest way, outside
  the timing: runyard's through its Store, MLflow's with rows in its own tables.

The client's own floor is measured too: the same calls against a server that answers
each of them at once without doing anything (``--null-server``, a Starlette app on
uvicorn in its own process). No server can be faster than that through this client.

Run by benchmarks/run.py when the ``mlflow-client`` extra is installed; alone:

    .venv/bin/python benchmarks/mlflow_compare.py [--quick]
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

QUICK = "--quick" in sys.argv
RUNS = 2_000 if QUICK else 20_000
SYNC_POINTS = {"runyard": 2_000 if QUICK else 10_000, "mlflow": 100 if QUICK else 300}
ASYNC_POINTS = 2_000 if QUICK else 10_000
CREATES = {"runyard": 50, "mlflow": 20}
FILTER, ORDER = "metrics.acc > 0.5", ["metrics.acc DESC"]
TARGETS = {
    "log_metric_sync_points_per_s": ">= 20x",
    "log_metric_async_points_per_s": ">= 50x",
    "create_run_ms": ">= 20x faster",
    "search_runs_ms": ">= 20x faster, runyard <= 200 ms",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def mlflow_server(folder: str) -> Iterator[tuple[str, str]]:
    """MLflow's own server on SQLite; yields (URL, database path)."""
    from server import answers

    db = os.path.join(folder, "mlflow.db")
    port = _free_port()
    bin_dir = os.path.dirname(sys.executable)
    argv = [os.path.join(bin_dir, "mlflow"), "server", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--backend-store-uri", f"sqlite:///{db}"]
    argv += ["--default-artifact-root", os.path.join(folder, "mlflow-artifacts")]
    with open(os.path.join(folder, "mlflow-server.log"), "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers(f"{url}/health", proc, time.monotonic() + 120, every=0.2):
            raise RuntimeError("mlflow server did not start; see mlflow-server.log")
        yield url, db
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def null_server(port: int) -> None:
    """Answer every MLflow call at once with the least the client accepts."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    info = {
        "run_id": uuid.uuid4().hex,
        "experiment_id": "1",
        "status": "RUNNING",
        "artifact_uri": "mlflow-artifacts:/1/x/artifacts",
        "lifecycle_stage": "active",
    }
    experiment = {"experiment_id": "1", "name": "null", "lifecycle_stage": "active"}

    async def answer(request: Request) -> JSONResponse:
        path = request.url.path
        if path.endswith(("runs/create", "runs/get")):
            return JSONResponse({"run": {"info": info, "data": {}}})
        if path.endswith(("experiments/get-by-name", "experiments/get")):
            return JSONResponse({"experiment": experiment})
        if path.endswith("experiments/create"):
            return JSONResponse({"experiment_id": "1"})
        return JSONResponse({})

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


@contextmanager
def null_process() -> Iterator[str]:
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--null-server", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the null server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def _floor(url: str) -> dict[str, float]:
    """The stock client's own cost per call: against the null server."""
    mlflow = _point_at(url, None)
    client = mlflow.MlflowClient()
    figures = {}
    for name, synchronous in (("sync", True), ("async", False)):
        with mlflow.start_run():
            start = time.perf_counter()
            for step in range(ASYNC_POINTS):
                mlflow.log_metric("loss", step * 0.001, step=step, synchronous=synchronous)
            if not synchronous:
                mlflow.flush_async_logging()
            figures[f"log_metric_{name}_points_per_s"] = ASYNC_POINTS / (
                time.perf_counter() - start
            )
    times = []
    for _ in range(CREATES["runyard"]):
        start = time.perf_counter()
        client.create_run("1")
        times.append(time.perf_counter() - start)
    figures["create_run_ms"] = statistics.median(times) * 1000
    return {k: round(v, 2) for k, v in figures.items()}


def _point_at(url: str, token: str | None) -> Any:
    import mlflow

    os.environ["MLFLOW_TRACKING_URI"] = url
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    if token is None:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    else:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    mlflow.set_tracking_uri(url)
    return mlflow


def _logging(mlflow: Any, points: int, synchronous: bool) -> float:
    mlflow.set_experiment(f"bench-log-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run() as run:
        start = time.perf_counter()
        for step in range(points):
            mlflow.log_metric("loss", step * 0.001, step=step, synchronous=synchronous)
        if not synchronous:
            mlflow.flush_async_logging()
        elapsed = time.perf_counter() - start
    stored = len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss"))
    if stored != points:
        raise RuntimeError(f"{stored} of {points} points stored")
    return points / elapsed


def _create(mlflow: Any, count: int) -> float:
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment(f"bench-create-{uuid.uuid4().hex[:6]}")
    client.create_run(experiment_id)  # warm up
    times = []
    for _ in range(count):
        start = time.perf_counter()
        client.create_run(experiment_id)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _search(mlflow: Any, experiment_id: str) -> tuple[float, int]:
    client = mlflow.MlflowClient()
    found = client.search_runs([experiment_id], FILTER, order_by=ORDER, max_results=1000)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        found = client.search_runs([experiment_id], FILTER, order_by=ORDER, max_results=1000)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, len(found)


def _acc(i: int) -> float:
    return (i * 7919 % 10_000) / 10_000  # spread over [0, 1), half of them above 0.5


def load_runyard(uri: str, artifacts: str, name: str) -> None:
    """RUNS runs with a metric, a param and a tag, through runyard's Store."""
    from runyard.records import NewRun, SeriesAppend
    from runyard.store import open_workspace

    store = open_workspace(uri, artifacts).store
    try:
        experiment = store.get_or_create_experiment(name)
        now = time.time()
        for first in range(0, RUNS, 1000):
            made = store.create_runs(
                experiment.id,
                [
                    NewRun(
                        id=uuid.uuid4().hex,
                        display_name=f"r{i}",
                        tags={"group": str(i % 5)},
                        properties={"alpha": str(i % 7)},
                        status="Completed",
                    )
                    for i in range(first, first + 1000)
                ],
            )
            for i, run in enumerate(made, start=first):
                store.log_batch(run.id, [SeriesAppend("acc", "scalar", [0], [_acc(i)], [now])])
    finally:
        store.close()


def load_mlflow(db: str, experiment_id: str) -> None:
    """RUNS runs with a metric, a param and a tag, as rows of MLflow's own tables."""
    now = int(time.time() * 1000)
    runs, latest, metrics, params, tags = [], [], [], [], []
    for i in range(RUNS):
        run_id = uuid.uuid4().hex
        runs.append((run_id, f"r{i}", "LOCAL", "", "", "bench", "FINISHED", now + i, now + i,
                     "", "active", f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                     int(experiment_id)))  # fmt: skip
        latest.append(("acc", _acc(i), now, 0, 0, run_id))
        metrics.append(("acc", _acc(i), now, run_id, 0, 0))
        params.append(("alpha", str(i % 7), run_id))
        tags.append(("group", str(i % 5), run_id))
        tags.append(("mlflow.runName", f"r{i}", run_id))
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, "
            "user_id, status, start_time, end_time, source_version, lifecycle_stage, "
            "artifact_uri, experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            runs,
        )
        conn.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            latest,
        )
        conn.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            metrics,
        )
        conn.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
        conn.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)


def _measure_side(
    side: str, url: str, token: str | None, load: Callable[[Any], str]
) -> dict[str, float]:
    mlflow = _point_at(url, token)
    figures = {
        "log_metric_sync_points_per_s": _logging(mlflow, SYNC_POINTS[side], True),
        "log_metric_async_points_per_s": _logging(mlflow, ASYNC_POINTS, False),
        "create_run_ms": _create(mlflow, CREATES[side]),
    }
    search_ms, found = _search(mlflow, load(mlflow))
    figures["search_runs_ms"] = search_ms
    figures["search_runs_returned"] = found
    while mlflow.active_run() is not None:
        mlflow.end_run()
    return {k: round(v, 2) for k, v in figures.items()}


def measure(folder: str) -> dict[str, Any]:
    import mlflow
    from server import serving

    results: dict[str, Any] = {"runs": RUNS, "mlflow_version": mlflow.__version__}
    results["sync_points"] = dict(SYNC_POINTS)  # MLflow's server is too slow for more
    uri = os.path.join(folder, "runyard-ws")
    with serving(uri, folder) as (server, token):
        artifacts = server.artifacts

        def load_ry(client: Any) -> str:
            name = "bench-search"
            load_runyard(uri, artifacts, name)
            return str(client.get_experiment_by_name(name).experiment_id)

        results["runyard"] = _measure_side("runyard", server.url, token, load_ry)
    with mlflow_server(folder) as (url, db):

        def load_ml(client: Any) -> str:
            experiment_id = str(client.create_experiment("bench-search"))
            load_mlflow(db, experiment_id)
            return experiment_id

        results["mlflow"] = _measure_side("mlflow", url, None, load_ml)
    with null_process() as url:
        results["client_floor"] = _floor(url)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    return results


def ratio(name: str, results: dict[str, Any]) -> float:
    ours, theirs = results["runyard"][name], results["mlflow"][name]
    return round(theirs / ours if name.endswith("_ms") else ours / theirs, 1)


def rows(results: dict[str, Any]) -> list[list[str]]:
    floor = results["client_floor"]
    return [
        [name, f"{results['runyard'][name]:,}", f"{results['mlflow'][name]:,}",
         f"{ratio(name, results)}x", f"{floor[name]:,}" if name in floor else "", target]
        for name, target in TARGETS.items()
    ]  # fmt: skip


def main() -> None:
    from tabulate import tabulate

    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        results = measure(folder)
    print(f"the stock MLflow client {results['mlflow_version']}; search over {RUNS:,} runs")
    sync = results["sync_points"]
    print(
        f"synchronous log_metric: {sync['runyard']:,} points on runyard, {sync['mlflow']:,} on"
        f" MLflow's server (10,000 there would take minutes); asynchronous: {ASYNC_POINTS:,} each"
    )
    headers = ["figure", "runyard", "mlflow server", "ratio", "client floor", "target"]
    print(tabulate(rows(results), headers=headers, disable_numparse=True))
    print(json.dumps({"mlflow_compare": results}))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--null-server":
        null_server(int(sys.argv[2]))
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        main()
