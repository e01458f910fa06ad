"""Figures through the server: a real ``runyard serve`` subprocess on 127.0.0.1, with a token.

Run by benchmarks/run.py beside the embedded figures; also on its own:

    .venv/bin/python benchmarks/server.py [--quick]

Client processes (the 8 loggers, the 20 mixed clients) are this file started again with
``--worker``: they print "ready", wait for "go" on stdin, then print one JSON line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil
from figures import create_runs, log_points, query_runs
from pg_schema import drop_schema, new_schema

QUICK = "--quick" in sys.argv or os.environ.get("RUNYARD_BENCH_QUICK") == "1"
LOGGERS = 8
LOGGER_POINTS = 25_000 if QUICK else 250_000
MIXED_CLIENTS = 20
MIXED_SECONDS = 5.0 if QUICK else 30.0
THINK_SECONDS = 0.01  # mean pause of a mixed client between two operations
WORKERS = int(os.environ.get("RUNYARD_BENCH_SERVER_WORKERS", "2"))

TARGETS = {
    "log_points_per_s": ">= 500,000",
    "parallel_8_points_per_s": "aim >= 1,000,000",
    "parallel_8_stored": "2,000,000",
    "create_run_ms": "<= 3",
    "create_runs_store_ms": "<= 3",
    "create_children_100_ms": "<= 30",
    "get_runs_filtered_ms": "<= 100",
    "get_runs_matched": "2,000",
    "read_series_s": "<= 0.3",
    "mixed_20_p50_ms": "",
    "mixed_20_p99_ms": "<= 50",
    "mixed_20_requests_per_s": "",
    "server_rss_start_mb": "",
    "server_rss_peak_mb": "bounded",
    "server_rss_end_mb": "",
}


# ----------------------------------------------------------------------------- the server


class Server:
    """``runyard serve`` in its own session; RSS of its process tree sampled meanwhile."""

    def __init__(self, uri: str, artifacts: str, folder: str, workers: int = WORKERS) -> None:
        self.artifacts = artifacts
        runyard = os.path.join(os.path.dirname(sys.executable), "runyard")
        self.log_path = os.path.join(folder, f"serve-{uuid.uuid4().hex[:6]}.log")
        argv = [runyard, "serve", "--workspace", uri, "--artifacts", artifacts]
        argv += ["--host", "127.0.0.1", "--port", "0", "--workers", str(workers)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.url = ""
        self.rss_start = self.rss_peak = self.rss_now = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.url:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"runyard serve did not start:\n{self.output()}")
            for line in self.output().splitlines():
                if line.startswith("runyard serves ") and " at http" in line:
                    self.url = line.split(" at ", 1)[1].split()[0]
            time.sleep(0.05)
        if not answers(f"{self.url}/api/health", self.proc, deadline):
            raise RuntimeError(f"runyard serve did not answer:\n{self.output()}")
        time.sleep(0.5)  # every worker up
        self.rss_start = self.rss_peak = self.rss()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self.url

    def output(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    def rss(self) -> int:
        """Resident memory of the server and its worker processes, in bytes."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.rss_now = self.rss()
            self.rss_peak = max(self.rss_peak, self.rss_now)

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of its session (workers), started by us
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


def answers(url: str, proc: subprocess.Popen[Any], deadline: float, every: float = 0.05) -> bool:
    """Wait until ``url`` answers 200; False once ``proc`` has ended or ``deadline``
    (``time.monotonic()``) has passed."""
    import httpx

    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(every)


@contextmanager
def serving(uri: str, folder: str) -> Iterator[tuple[Server, str]]:
    """Serve ``uri`` (auth on); yield the server and a contributor token's secret."""
    from runyard.store import open_workspace

    artifacts = os.path.join(folder, f"artifacts-{uuid.uuid4().hex[:6]}")
    opened = open_workspace(uri, artifacts)
    try:
        _record, secret = opened.store.create_token("bench", "contributor")
    finally:
        opened.store.close()
    server = Server(uri, artifacts, folder)
    try:
        server.start()
        yield server, secret
    finally:
        server.stop()


# ----------------------------------------------------------------------------- figures


def _analyze(db_uri: str) -> Callable[[], None] | None:
    """PostgreSQL's table statistics, gathered on the database itself (as run.py does)."""
    if "://" not in db_uri:
        return None

    def analyze() -> None:
        from runyard.store import open_workspace

        opened = open_workspace(db_uri, os.path.abspath("analyze-artifacts"))
        try:
            opened.store.db.write(lambda cur: cur.execute("ANALYZE"))
        finally:
            opened.store.close()

    return analyze


def clients(argv_of: Callable[[int], list[str]], count: int, env: dict[str, str]) -> list[Any]:
    """Start ``count`` worker processes, let them all go at once, return their JSON lines."""
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *argv_of(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for i in range(count)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a benchmark client did not start")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode:
                raise RuntimeError(f"a benchmark client failed ({proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def parallel_logging(ws: Any, url: str, env: dict[str, str]) -> tuple[float, int]:
    from runyard import Experiment

    exp = Experiment(ws, "bench-parallel")
    results = clients(lambda i: ["--worker", "log", url, exp.id], LOGGERS, env)
    started = min(r["start"] for r in results)
    ended = max(r["end"] for r in results)
    series = ws._store.list_series([r["run_id"] for r in results])  # counted by the server
    stored = sum(s.count for s in series if s.name == "loss")
    return stored / (ended - started), stored


def mixed_load(ws: Any, url: str, env: dict[str, str]) -> tuple[float, float, float, int]:
    from runyard import Experiment

    exp = Experiment(ws, "bench-mixed")
    seed = exp.start_logging(snapshot_directory=None, outputs=False)
    for i in range(10_000):
        seed.log("curve", i * 0.5, step=i)
    seed.complete()
    for i in range(200):
        listed = exp.start_logging(snapshot_directory=None, outputs=False)
        listed.set_tags({"group": str(i % 10)})
        listed.complete()
    ws._store.flush()
    argv = ["--worker", "mixed", url, exp.id, seed.id, str(MIXED_SECONDS)]
    results = clients(lambda i: [*argv, str(i)], MIXED_CLIENTS, env)
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = sum(r["errors"] for r in results)
    if errors:
        print(f"mixed load: {errors} operations failed", file=sys.stderr)
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return (
        _percentile(latencies, 50) * 1000,
        _percentile(latencies, 99) * 1000,
        len(latencies) / span,
        errors,
    )


def _percentile(sorted_values: list[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


@contextmanager
def _phase(name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if os.environ.get("RUNYARD_BENCH_VERBOSE"):
        print(f"  server bench: {name} took {time.perf_counter() - start:.1f} s", file=sys.stderr)


def measure_one(uri: str, folder: str) -> dict[str, float]:
    from runyard import Workspace

    with serving(uri, folder) as (server, token):
        env = {**os.environ, "RUNYARD_TOKEN": token, "RUNYARD_BENCH_QUICK": str(int(QUICK))}
        old = os.environ.get("RUNYARD_TOKEN")
        os.environ["RUNYARD_TOKEN"] = token
        try:
            ws = Workspace(server.url)
            with _phase("log"):
                rate, read, _ = log_points(ws)
            with _phase("create"):
                create_ms, store_ms, children_ms = create_runs(ws)
            with _phase("query"):
                query_ms, matched = query_runs(ws, _analyze(uri))
            with _phase("parallel"):
                parallel_rate, stored = parallel_logging(ws, server.url, env)
            with _phase("mixed"):
                p50, p99, per_s, errors = mixed_load(ws, server.url, env)
            ws._store.close()
        finally:
            if old is None:
                os.environ.pop("RUNYARD_TOKEN", None)
            else:
                os.environ["RUNYARD_TOKEN"] = old
        end_rss = server.rss()
        mb = 1 << 20
        return {
            "log_points_per_s": round(rate),
            "parallel_8_points_per_s": round(parallel_rate),
            "parallel_8_stored": stored,
            "create_run_ms": round(create_ms, 3),
            "create_runs_store_ms": round(store_ms, 3),
            "create_children_100_ms": round(children_ms, 2),
            "get_runs_filtered_ms": round(query_ms, 2),
            "get_runs_matched": matched,
            "read_series_s": round(read, 4),
            "mixed_20_p50_ms": round(p50, 2),
            "mixed_20_p99_ms": round(p99, 2),
            "mixed_20_requests_per_s": round(per_s),
            "mixed_20_errors": errors,
            "server_rss_start_mb": round(server.rss_start / mb, 1),
            "server_rss_peak_mb": round(server.rss_peak / mb, 1),
            "server_rss_end_mb": round(end_rss / mb, 1),
        }


def measure(folder: str, pg: str | None) -> dict[str, dict[str, float]]:
    """The figures through a server over SQLite, and over PostgreSQL if ``pg`` answers."""
    results = {"sqlite": measure_one(os.path.join(folder, "server-ws"), folder)}
    if pg is not None:
        schema_uri = new_schema(pg, "bench_srv")
        if schema_uri is not None:
            uri, schema = schema_uri
            try:
                results["postgresql"] = measure_one(uri, folder)
            finally:
                drop_schema(pg, schema)
    return results


def rows(results: dict[str, dict[str, float]]) -> list[list[str]]:
    return [
        [f"server: {name}", *(f"{results[db][name]:,}" for db in results), target]
        for name, target in TARGETS.items()
    ]


# ----------------------------------------------------------------------------- clients


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(1)


def worker_log(url: str, experiment_id: str) -> dict[str, Any]:
    from runyard import Experiment, Workspace

    ws = Workspace(url)
    exp = Experiment(ws, _experiment_name(ws, experiment_id))
    run = exp.start_logging(snapshot_directory=None, outputs=False)
    log = run.log
    _wait_for_go()
    start = time.time()
    for i in range(LOGGER_POINTS):
        log("loss", i * 0.001, step=i)
    run.flush()
    end = time.time()
    run.complete()
    return {"run_id": run.id, "start": start, "end": end}


def worker_mixed(
    url: str, experiment_id: str, seed_id: str, seconds: float, index: int
) -> dict[str, Any]:
    from runyard import Experiment, Workspace
    from runyard.store import _http

    latencies: list[float] = []
    original = _http.HttpClient.request

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            latencies.append(time.perf_counter() - start)

    _http.HttpClient.request = timed  # type: ignore[method-assign]
    ws = Workspace(url)
    exp = Experiment(ws, _experiment_name(ws, experiment_id))
    run = exp.start_logging(snapshot_directory=None, outputs=False)
    rng = random.Random(index)
    step = 0
    errors = 0
    _wait_for_go()
    latencies.clear()
    start = time.time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        choice = rng.random()
        try:
            if choice < 0.35:  # a training loop's points
                for _ in range(200):
                    run.log("loss", rng.random(), step=step)
                    step += 1
                run.flush()
            elif choice < 0.45:
                run.set_tags({"phase": str(step)})
            elif choice < 0.6:
                ws._store.get_run(seed_id)
            elif choice < 0.75:  # a chart: a 10,000-point series
                ws._store.get_history(seed_id, "curve")
            elif choice < 0.85:
                ws._store.list_series([seed_id, run.id])
            elif choice < 0.95:  # a listing: 20 of 200 runs
                list(exp.get_runs(tags={"group": str(rng.randrange(10))}))
            else:
                exp.start_logging(snapshot_directory=None, outputs=False).complete()
        except Exception as exc:
            errors += 1
            print(f"client {index}: {type(exc).__name__}: {exc}", file=sys.stderr)
        time.sleep(rng.expovariate(1 / THINK_SECONDS))
    end = time.time()
    measured = list(latencies)
    run.complete()
    return {"latencies": measured, "errors": errors, "start": start, "end": end}


def _experiment_name(ws: Any, experiment_id: str) -> str:
    name: str = ws._store.get_experiment(experiment_id).name
    return name


def main() -> None:
    from tabulate import tabulate

    pg = os.environ.get("RUNYARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        results = measure(folder, pg)
    print(tabulate(rows(results), headers=["figure", *results, "target"], disable_numparse=True))
    print(json.dumps({"server": results}))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, args = sys.argv[2], sys.argv[3:]
        if kind == "log":
            out = worker_log(*args)
        else:
            out = worker_mixed(args[0], args[1], args[2], float(args[3]), int(args[4]))
        print(json.dumps(out), flush=True)
    else:
        main()
