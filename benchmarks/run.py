"""runyard's performance figures: prints a table and one JSON line.

    python3 dev.py bench            # SQLite, and PostgreSQL when it answers
    python3 dev.py bench --quick    # smaller sizes, for a smoke run

The figures are measured, never asserted; docs/benchmarks.md keeps the latest ones.
PostgreSQL: RUNYARD_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test);
each run uses a fresh schema and drops it afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time

import ray_targets
import s3
import script_runs
from figures import POINTS, RUNS, create_runs, log_points, query_runs
from pg_schema import drop_schema, new_schema
from tabulate import tabulate

import server
import studio
from runyard import Workspace

PG = os.environ.get("RUNYARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def best_of(argv: list[str], times: int = 10) -> float:
    runs = []
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(time.perf_counter() - start)
    return min(runs)


def cli_figures(workspace: str) -> dict[str, float]:
    """Whole-process times of the command line (best of 10)."""
    runyard = os.path.join(os.path.dirname(sys.executable), "runyard")
    listing = [runyard, "run", "list", "--workspace", workspace, "-e", "bench-query"]
    return {
        "cli_help_s": round(best_of([runyard, "--help"]), 3),
        "cli_run_list_s": round(best_of(listing), 3),
    }


def import_cost() -> float:
    def best(code: str) -> float:
        runs = []
        for _ in range(15):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - start)
        return min(runs)

    return (best("import runyard") - best("pass")) * 1000


def _analyze(ws: Workspace) -> None:
    ws._store.db.write(lambda cur: cur.execute("ANALYZE"))  # type: ignore[attr-defined]


def measure(ws: Workspace) -> dict[str, float]:
    rate, read, values = log_points(ws)
    create_ms, _, children_ms = create_runs(ws)
    analyze = (
        (lambda: ws._store.db.write(lambda cur: cur.execute("ANALYZE")))
        if "://" in ws.uri
        else None
    )
    query_ms, matched = query_runs(ws, analyze)
    return {
        "log_points_per_s": round(rate),
        "read_series_s": round(read, 4),
        "get_metrics_name_s": round(values, 4),
        "create_run_ms": round(create_ms, 3),
        "create_children_100_ms": round(children_ms, 2),
        "get_runs_filtered_ms": round(query_ms, 2),
        "get_runs_matched": matched,
    }


def postgres_workspace(folder: str) -> tuple[Workspace, str] | None:
    made = new_schema(PG, "bench")
    if made is None:
        return None
    uri, schema = made
    return Workspace(uri, artifacts=os.path.join(folder, "pg-artifacts")), schema


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": platform.platform(terse=True),
    }


def mlflow_compare_rows(compared: dict[str, object]) -> list[list[str]]:
    import mlflow_compare

    return mlflow_compare.rows(compared)


def mlflow_figures(folder: str) -> dict[str, object] | None:
    """The stock MLflow client against runyard and MLflow's server, if it is installed."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        print("MLflow comparison skipped: pip install '.[mlflow-client]'", file=sys.stderr)
        return None
    import mlflow_compare

    return mlflow_compare.measure(folder)


def main() -> None:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        results["sqlite"] = measure(Workspace(os.path.join(folder, "ws")))
        cli = cli_figures(os.path.join(folder, "ws"))
        pg = postgres_workspace(folder)
        if pg is not None:
            ws, schema = pg
            try:
                results["postgresql"] = measure(ws)
            finally:
                ws._store.close()
                drop_schema(PG, schema)
        scripts = script_runs.measure(folder)
        served = server.measure(folder, PG if pg is not None else None)
        compared = mlflow_figures(folder)
        pages = studio.measure(folder, PG if pg is not None else None, "--quick" in sys.argv)
        no_s3 = s3.available()
        if no_s3:
            print(f"S3 figures skipped: {no_s3}", file=sys.stderr)
        bucket = None if no_s3 else s3.measure(folder)
        no_ray = ray_targets.available() or (None if pg is not None else "PostgreSQL is down")
        if no_ray:
            print(f"Ray figures skipped: {no_ray}", file=sys.stderr)
        cluster = None if no_ray else ray_targets.measure(folder, PG)
    import_ms = import_cost()
    targets = {
        "log_points_per_s": ">= 500,000 (aim 1,000,000)",
        "read_series_s": "<= 0.1",
        "get_metrics_name_s": "<= 0.1",
        "create_run_ms": "<= 1",
        "create_children_100_ms": "<= 50",
        "get_runs_filtered_ms": "<= 50",
        "get_runs_matched": "",
    }
    rows = [
        [name, *(f"{results[db][name]:,}" for db in results), targets[name]] for name in targets
    ]
    rows.append(["import_runyard_ms", f"{import_ms:.1f}", *[""] * (len(results) - 1), "<= 100"])
    script_targets = {
        "submit_to_first_line_s": "<= 0.5",
        "cancel_to_all_gone_s": "<= 2",
        "burst_50_runs_2_slots_s": "",
        "burst_completed": "50",
        "burst_ran_once": "1 (none lost, none twice)",
    }
    rows.append(["cli_help_s", f"{cli['cli_help_s']}", *[""] * (len(results) - 1), "<= 0.3"])
    rows.append(
        ["cli_run_list_s", f"{cli['cli_run_list_s']}", *[""] * (len(results) - 1), "<= 0.5"]
    )
    for name, target in script_targets.items():
        rows.append([name, f"{scripts[name]:,}", *[""] * (len(results) - 1), target])
    print(f"points per series: {POINTS:,}; runs for the query: {RUNS:,}")
    print(tabulate(rows, headers=["figure", *results, "target"], disable_numparse=True))
    print("through a runyard serve subprocess on 127.0.0.1, with a token:")
    print(
        tabulate(server.rows(served), headers=["figure", *served, "target"], disable_numparse=True)
    )
    if pages:
        print("the studio in headless Chromium, through runyard serve (medians of 5):")
        print(
            tabulate(
                studio.rows(pages), headers=["figure", *pages, "target"], disable_numparse=True
            )
        )
    if bucket is not None:
        print("a file through runyard serve into moto's S3 server on 127.0.0.1:")
        headers = ["figure", "value", "target"]
        print(tabulate(s3.rows(bucket), headers=headers, disable_numparse=True))
    if cluster is not None:
        print("script runs on a local Ray cluster (2 CPUs), PostgreSQL workspace (medians of 5):")
        headers = ["figure", "value", "target"]
        print(tabulate(ray_targets.rows(cluster), headers=headers, disable_numparse=True))
    if compared is not None:
        print(f"the stock MLflow client {compared['mlflow_version']} against runyard and MLflow:")
        headers = ["figure", "runyard", "mlflow server", "ratio", "client floor", "target"]
        print(tabulate(mlflow_compare_rows(compared), headers=headers, disable_numparse=True))
    print(
        json.dumps(
            {
                "machine": machine(),
                "points": POINTS,
                "runs": RUNS,
                **results,
                "import_runyard_ms": round(import_ms, 1),
                "script_runs_sqlite": scripts,
                "cli_sqlite": cli,
                "server": served,
                "mlflow_compare": compared,
                "studio": pages,
                "s3": bucket,
                "ray": cluster,
            }
        )
    )


if __name__ == "__main__":
    main()
