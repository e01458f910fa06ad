"""A script that writes a lot: the log is complete and the supervisor stays small."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

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


TWENTY_MB = """
import sys
out = sys.stdout.buffer
for i in range(20 * 1024):
    out.write(b"%09d " % i + b"y" * 1013 + b"\\n")   # 1 KiB a line
out.write("the very last line: é\\n".encode())
out.flush()
"""

WATCHER = """
import sys
from runyard import Workspace
Workspace(sys.argv[1]).get_run(sys.argv[2]).wait_for_completion(
    show_output=True, wait_post_processing=True
)
"""


def test_show_output_streams_a_20_mb_log_to_its_last_byte(project, tmp_path):
    project.script("loud.py", TWENTY_MB)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "loud.py"))
    shown = tmp_path / "shown.txt"
    with open(shown, "wb") as out:
        subprocess.run(
            [sys.executable, "-c", WATCHER, project.ws.uri, run.id],
            stdout=out, check=True, timeout=120,
        )  # fmt: skip
    log = Path(project.ws._artifacts.local_path(run.id, "user_logs/std_log.txt")).read_bytes()
    assert len(log) > 20 * 1024 * 1024
    text = shown.read_bytes()
    start = text.index(b"\n\n", text.index(b"Streaming user_logs/std_log.txt")) + 2
    end = text.rindex(b"\nExecution Summary")
    assert text[start:end] == log  # every byte, the last line included
    assert text[start:end].endswith("the very last line: é\n".encode())


LEFTOVER_WRITER = """
import subprocess, sys
code = '''
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # stopped only by SIGKILL, after the grace
with open(sys.argv[1], "w") as truth:
    for i in range(100000):
        line = f"leftover {i}"
        print(line, flush=True)       # into the run's log
        truth.write(line + "\\\\n")     # and, once it is written there, into the truth
        truth.flush()
        time.sleep(0.002)
'''
import os, time
subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], start_new_session=True)
while not os.path.exists(sys.argv[1]) or os.path.getsize(sys.argv[1]) < 500:
    time.sleep(0.01)   # it writes steadily: now end the script
print("script done", flush=True)
"""


def test_output_of_leftover_processes_is_kept_to_the_end(project, tmp_path, monkeypatch):
    truth = tmp_path / "truth.txt"
    project.script("leaves.py", LEFTOVER_WRITER)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "leaves.py", [str(truth)]))
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    written = truth.read_text().splitlines()
    logged = [ln for ln in project.log_text(run).splitlines() if ln.startswith("leftover")]
    assert len(written) > 100
    assert logged[: len(written)] == written  # nothing it wrote before it was stopped is lost
