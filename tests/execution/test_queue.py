"""The local queue and the heartbeat: slots, order, and supervisors that die."""

from __future__ import annotations

import itertools
import json
import signal
import time

from runyard import ScriptRunConfig

from .conftest import supervisor_of, wait_until

STAMP = """
import json, sys, time
start = time.time()
time.sleep(float(sys.argv[2]))
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps([sys.argv[3], start, time.time()]) + "\\n")
"""


def _spans(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_slot_runs_one_at_a_time_in_submission_order(project, tmp_path):
    project.ws.max_concurrent_runs = 1
    project.script("stamp.py", STAMP)
    stamps = tmp_path / "stamps.txt"
    runs = [
        project.exp.submit(ScriptRunConfig(str(project.root), "stamp.py", [str(stamps), 0.3, i]))
        for i in range(4)
    ]
    for run in runs:
        assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    spans = _spans(stamps)
    assert [s[0] for s in spans] == ["0", "1", "2", "3"]
    for before, after in itertools.pairwise(spans):
        assert before[2] <= after[1], "two runs overlapped with one slot"


def _peak(spans):
    events = sorted([(s[1], 1) for s in spans] + [(s[2], -1) for s in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


PARENT_OF_FOUR = """
import json, sys, time
from runyard import Run, ScriptRunConfig
run = Run.get_context()
stamps = sys.argv[1]

def busy(seconds):
    start = time.time()
    time.sleep(seconds)
    with open(stamps, "a") as fh:
        fh.write(json.dumps(["parent", start, time.time()]) + "\\n")

config = lambda i: ScriptRunConfig(".", "stamp.py", [stamps, 0.3, f"child{i}"])
children = [run.submit_child(config(i)) for i in range(4)]
busy(0.6)  # the parent executes: its slot is its own
for child in children:
    child.wait_for_completion()  # the parent waits: one child at a time may use its slot
busy(0.2)
"""


def test_children_of_a_waiting_parent_share_its_slot_one_at_a_time(project, tmp_path):
    project.ws.max_concurrent_runs = 1
    project.script("stamp.py", STAMP)
    project.script("parent.py", PARENT_OF_FOUR)
    stamps = tmp_path / "stamps.txt"
    parent = project.exp.submit(ScriptRunConfig(str(project.root), "parent.py", [str(stamps)]))
    assert parent.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    spans = _spans(stamps)
    assert sorted(s[0] for s in spans) == [*(f"child{i}" for i in range(4)), "parent", "parent"]
    assert _peak(spans) == 1, spans  # never more runs executing than slots
    assert {c.get_status() for c in parent.get_children()} == {"Completed"}


PARENT_OF_ONE = """
import sys
from runyard import Run, ScriptRunConfig
run = Run.get_context()
child = run.submit_child(ScriptRunConfig(".", "stamp.py", [sys.argv[1], 1.5, "child"]))
child.wait_for_completion()
"""


def test_a_killed_lenders_slot_stays_taken_while_its_borrower_runs(project, tmp_path):
    """The lender's supervisor dies (releasing its slot lock) while a child runs in the lent
    slot: the child goes on, and no other run may take that slot before it ends."""
    project.ws.max_concurrent_runs = 1
    project.script("stamp.py", STAMP)
    project.script("parent.py", PARENT_OF_ONE)
    stamps = tmp_path / "stamps.txt"
    parent = project.exp.submit(ScriptRunConfig(str(project.root), "parent.py", [str(stamps)]))
    child = wait_until(lambda: next(iter(parent.get_children()), None), timeout=30)
    wait_until(lambda: child.get_status() == "Running", timeout=30)
    supervisor_of(parent.id).send_signal(signal.SIGKILL)
    later = project.exp.submit(
        ScriptRunConfig(str(project.root), "stamp.py", [str(stamps), 0, "later"])
    )
    assert later.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    assert child.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    spans = _spans(stamps)
    assert sorted(s[0] for s in spans) == ["child", "later"]
    assert _peak(spans) == 1, spans  # never more runs executing than slots


def test_many_runs_two_slots_none_lost_none_twice(project, tmp_path):
    project.script("stamp.py", STAMP)
    stamps = tmp_path / "stamps.txt"
    runs = [
        project.exp.submit(ScriptRunConfig(str(project.root), "stamp.py", [str(stamps), 0.05, i]))
        for i in range(16)
    ]
    for run in runs:
        assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    spans = _spans(stamps)
    assert sorted(int(s[0]) for s in spans) == list(range(16))
    assert _peak(spans) <= 2


def test_a_killed_supervisor_fails_its_run_at_once_and_frees_its_slot(project):
    project.ws.max_concurrent_runs = 1
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    project.script("quick.py", "print('quick run')\n")
    doomed = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    wait_until(lambda: "up" in project.log_text(doomed), timeout=30)
    follower = project.exp.submit(ScriptRunConfig(str(project.root), "quick.py"))
    wait_until(lambda: follower.get_status() == "Queued", timeout=30)
    supervisor_of(doomed.id).send_signal(signal.SIGKILL)
    # on the supervisor's machine a reader sees the process gone: no 120 s wait
    details = doomed.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "SupervisorDied"
    assert "killed with SIGKILL" in details["error"]["error"]["message"]
    assert follower.wait_for_completion(wait_post_processing=True)["status"] == "Completed"


def _supervised_elsewhere(project, run):
    """Make readers here see the run's supervisor as another machine's process."""
    wait_until(lambda: run.get_status() == "Running", timeout=30)
    project.ws._store.heartbeat(run.id, supervisor="0123456789ab-1-1")


def test_a_supervisor_on_another_machine_is_judged_by_its_heartbeat(project, monkeypatch):
    project.ws.max_concurrent_runs = 1
    monkeypatch.setenv("RUNYARD_HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "1")
    monkeypatch.setenv("RUNYARD_FAILED_SECONDS", "3")
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    project.script("quick.py", "print('quick run')\n")
    doomed = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    _supervised_elsewhere(project, doomed)
    follower = project.exp.submit(ScriptRunConfig(str(project.root), "quick.py"))
    wait_until(lambda: follower.get_status() == "Queued", timeout=30)
    supervisor_of(doomed.id).send_signal(signal.SIGKILL)
    wait_until(lambda: doomed.get_status() == "NotResponding", timeout=10)
    assert [r.id for r in project.exp.get_runs(status="NotResponding")] == [doomed.id]
    details = doomed.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert "heartbeat" in details["error"]["error"]["message"]
    assert follower.wait_for_completion(wait_post_processing=True)["status"] == "Completed"


def test_a_slow_heartbeat_marked_not_responding_recovers(project, monkeypatch):
    monkeypatch.setenv("RUNYARD_HEARTBEAT_SECONDS", "1.0")
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "0.3")
    monkeypatch.setenv("RUNYARD_FAILED_SECONDS", "60")
    project.script("nap.py", "import time\ntime.sleep(2.5)\nprint('woke up')\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "nap.py"))
    _supervised_elsewhere(project, run)  # a reader here would ask the OS, not the clock
    seen = set()
    while run.get_status() not in ("Completed", "Failed", "Canceled"):
        seen.add(run.status)
        time.sleep(0.02)
    assert "NotResponding" in seen  # readers guessed the supervisor was gone...
    assert run.get_status() == "Completed"  # ...but it was not, and the run went on
    assert "woke up" in project.log_text(run)


def test_a_listing_sees_a_dead_supervisors_run_failed_within_heartbeats(project, monkeypatch):
    """Not only the run's own get_status: every reader on the supervisor's machine asks the
    process once a run missed a few heartbeats (not after RUNYARD_NOT_RESPONDING_SECONDS)."""
    monkeypatch.setenv("RUNYARD_HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("RUNYARD_NOT_RESPONDING_SECONDS", "300")
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    run = project.exp.submit(ScriptRunConfig(str(project.root), "sleepy.py"))
    wait_until(lambda: "up" in project.log_text(run), timeout=30)
    supervisor_of(run.id).send_signal(signal.SIGKILL)
    listed = wait_until(
        lambda: [r for r in project.exp.get_runs() if r._record.status == "Failed"], timeout=15
    )
    assert [r.id for r in listed] == [run.id]
    assert listed[0]._record.error["error"]["code"] == "SupervisorDied"
