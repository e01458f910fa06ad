"""A script that writes a lot: the log is complete and the supervisor stays small."""

from __future__ import annotations

import os
import threading

import psutil

from runyard import ScriptRunConfig

from .conftest import supervisor_of, wait_until

HUNDRED_MB = """
import sys
line = b"x" * 1023 + b"\\n"
out = sys.stdout.buffer
for _ in range(102400):
    out.write(line)
out.flush()
"""


def test_100_mb_of_stdout(project):
    project.script("loud.py", HUNDRED_MB)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "loud.py"))
    supervisor = wait_until(lambda: _find(run.id), timeout=30)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                peak[0] = max(peak[0], supervisor.memory_info().rss)
            except psutil.Error:
                return
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    finally:
        done.set()
        sampler.join()
    log = project.ws._artifacts.local_path(run.id, "user_logs/std_log.txt")
    assert os.path.getsize(log) == 100 * 1024 * 1024
    assert peak[0] < 150 * 1024 * 1024, f"supervisor peaked at {peak[0] / 2**20:.0f} MiB"


def _find(run_id):
    try:
        return supervisor_of(run_id)
    except AssertionError:
        return None
