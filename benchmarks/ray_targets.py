"""Script runs on a Ray compute target: submit latency, cancel latency, 20 runs at once.

A local Ray cluster (``ray start --head``, 2 CPUs) is started for the measurement and
stopped after it; the workspace is PostgreSQL with an artifact folder, as a team's would
be. Run by benchmarks/run.py; also on its own:

    .venv/bin/python benchmarks/ray_targets.py

Figures (medians of 5 where it says so):
- submit → first line: from the call of ``exp.submit`` to the time the script's first line
  took, on the already-running cluster (the script prints ``time.time()``);
- cancel → all gone: from ``run.cancel()`` until no process of the run (the script, and a
  child of it that ignores SIGTERM) is left;
- 20 runs submitted at once to the 2-CPU cluster: the time until all are finished, how
  many Completed, and how many ran exactly once (each script appends its run id to a file).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from runyard import Experiment, ScriptRunConfig, Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ray_cluster.py

REPEATS = 5
BURST = 20
TARGET = "bench-ray"
TARGETS = {
    "ray_submit_to_first_line_s": "<= 3",
    "ray_cancel_to_all_gone_s": "<= 5",
    "ray_burst_20_runs_2_cpus_s": "reported",
    "ray_burst_completed": "20",
    "ray_burst_ran_once": "20 (none lost, none twice)",
}
FIRST_LINE = "import time\nprint(repr(time.time()), flush=True)\n"
SLEEPER = """
import subprocess, sys, time
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", code, sys.argv[1]])
print("up", flush=True)
time.sleep(600)
"""
STAMP = "import sys, time\nopen(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\ntime.sleep(1)\n"


def available() -> str | None:
    """Why the figures cannot be measured here (None: they can)."""
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install '.[ray]')"
    return None


def _wait(predicate, timeout: float = 120.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise TimeoutError("the condition was not met in time")


def _log(ws: Workspace, run) -> str:
    from runyard.errors import NotFound

    try:
        with ws._artifacts.open(run.id, "user_logs/std_log.txt") as fh:
            return fh.read().decode("utf-8", "replace")
    except NotFound:
        return ""


def _with_marker(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def measure_on(ws: Workspace, folder: Path) -> dict[str, float]:
    exp = Experiment(ws, "ray-bench")
    (folder / "first.py").write_text(FIRST_LINE)
    (folder / "sleeper.py").write_text(SLEEPER)
    (folder / "stamp.py").write_text(STAMP)
    firsts = []
    for _ in range(REPEATS):
        start = time.time()
        run = exp.submit(ScriptRunConfig(str(folder), "first.py", compute_target=TARGET))
        _wait(lambda run=run: _log(ws, run).strip())
        firsts.append(float(_log(ws, run).split()[0]) - start)
        run.wait_for_completion(wait_post_processing=True)
    cancels = []
    for i in range(REPEATS):
        marker = f"ray-bench-{os.getpid()}-{i}"
        config = ScriptRunConfig(str(folder), "sleeper.py", [marker], compute_target=TARGET)
        run = exp.submit(config)
        _wait(lambda run=run: "up" in _log(ws, run))
        _wait(lambda marker=marker: bool(_with_marker(marker)))
        start = time.monotonic()
        run.cancel()
        _wait(lambda marker=marker: not _with_marker(marker), every=0.01)
        cancels.append(time.monotonic() - start)
        _wait(lambda run=run: run.get_status() == "Canceled")
    stamps = folder / "stamps.txt"
    start = time.monotonic()
    runs = [
        exp.submit(
            ScriptRunConfig(str(folder), "stamp.py", [str(stamps), str(i)], compute_target=TARGET)
        )
        for i in range(BURST)
    ]
    for run in runs:
        run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
    burst = time.monotonic() - start
    lines = stamps.read_text().split()
    return {
        "ray_submit_to_first_line_s": round(statistics.median(firsts), 3),
        "ray_cancel_to_all_gone_s": round(statistics.median(cancels), 3),
        "ray_burst_20_runs_2_cpus_s": round(burst, 2),
        "ray_burst_completed": sum(r.get_status() == "Completed" for r in runs),
        "ray_burst_ran_once": sum(lines.count(str(i)) == 1 for i in range(BURST)),
    }


def measure(folder: str, pg: str) -> dict[str, float] | None:
    """The figures on a fresh local cluster and a fresh PostgreSQL schema."""
    from pg_schema import drop_schema, new_schema
    from tests.ray_cluster import ray_cluster

    from runyard.compute import ComputeTarget, RayCompute

    made = new_schema(pg, "raybench")
    if made is None:
        return None
    uri, schema = made
    project = Path(folder) / "ray-project"
    project.mkdir(exist_ok=True)
    ws = Workspace(uri, artifacts=os.path.join(folder, "ray-artifacts"))
    try:
        with ray_cluster(cpus=2) as url:
            ComputeTarget.attach(ws, TARGET, RayCompute.attach_configuration(url))
            return measure_on(ws, project)
    finally:
        ws._store.close()
        drop_schema(pg, schema)


def rows(found: dict[str, float]) -> list[list[str]]:
    return [[name, f"{found[name]}", target] for name, target in TARGETS.items()]


if __name__ == "__main__":
    from tabulate import tabulate

    missing = available()
    if missing:
        sys.exit(f"Ray figures skipped: {missing}")
    pg = os.environ.get("RUNYARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        result = measure(tmp, pg)
    if result is None:
        sys.exit("Ray figures skipped: PostgreSQL does not answer")
    print(tabulate(rows(result), headers=["figure", "value", "target"], disable_numparse=True))
    print(json.dumps({"ray": result}))
