"""Script-run figures: submit latency, cancel latency, a burst of runs on two slots."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import psutil

from runyard import Experiment, ScriptRunConfig, Workspace

FIRST_LINE = "import sys, time\nprint(repr(time.time()), flush=True)\n"
# the worst case: a grandchild that ignores SIGTERM, so only the SIGKILL after the grace ends it
SLEEPER = """
import os, subprocess, sys, time
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", code])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""
STAMP = "import sys\nopen(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n"


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise RuntimeError("timed out")


def _first_line(ws: Workspace, run) -> float | None:
    path = ws._artifacts.local_path(run.id, "user_logs/std_log.txt")
    try:
        with open(path) as fh:
            text = fh.readline().strip()
        return float(text) if text else None
    except (OSError, ValueError):
        return None


def measure(folder: str) -> dict[str, float]:
    ws = Workspace(os.path.join(folder, "scripts-ws"))
    exp = Experiment(ws, "bench-scripts")
    source = os.path.join(folder, "src")
    os.makedirs(source, exist_ok=True)
    for name, code in (("first.py", FIRST_LINE), ("sleeper.py", SLEEPER), ("stamp.py", STAMP)):
        with open(os.path.join(source, name), "w") as fh:
            fh.write(code)

    latencies = []
    for _ in range(10):
        start = time.time()
        run = exp.submit(ScriptRunConfig(source, "first.py"))
        _wait(lambda run=run: _first_line(ws, run) is not None)
        latencies.append(_first_line(ws, run) - start)  # type: ignore[operator]
        run.wait_for_completion(wait_post_processing=True)

    cancels = []
    for _ in range(5):
        pids = Path(folder) / f"pids-{len(cancels)}.txt"
        run = exp.submit(ScriptRunConfig(source, "sleeper.py", [str(pids)]))
        _wait(lambda pids=pids: pids.exists() and len(pids.read_text().split()) == 2)
        procs = [psutil.Process(int(p)) for p in pids.read_text().split()]
        start = time.monotonic()
        run.cancel()
        _wait(lambda procs=procs: not any(_alive(p) for p in procs))
        cancels.append(time.monotonic() - start)
        run.wait_for_completion(wait_post_processing=True)

    ws.max_concurrent_runs = 2
    stamps = os.path.join(folder, "stamps.txt")
    start = time.monotonic()
    burst = [exp.submit(ScriptRunConfig(source, "stamp.py", [stamps, str(i)])) for i in range(50)]
    statuses = [r.wait_for_completion(wait_post_processing=True)["status"] for r in burst]
    elapsed = time.monotonic() - start
    with open(stamps) as fh:
        seen = fh.read().split()
    return {
        "submit_to_first_line_s": round(statistics.median(latencies), 3),
        "cancel_to_all_gone_s": round(statistics.median(cancels), 3),
        "burst_50_runs_2_slots_s": round(elapsed, 2),
        "burst_completed": statuses.count("Completed"),
        "burst_ran_once": int(sorted(seen, key=int) == [str(i) for i in range(50)]),
    }


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
