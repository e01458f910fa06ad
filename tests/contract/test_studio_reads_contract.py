"""The Store reads the studio draws from: experiments at a glance, the number of runs a
search matches, a run's status history. Every database, directly and through a server."""

from __future__ import annotations

import time

import pytest

from runyard.errors import NotFound, UserError
from runyard.records import Condition, NewRun, Order, RunQuery
from runyard.run_filter import parse_run_filter


def test_experiment_overview_counts_top_level_runs_by_status(store):
    busy = store.get_or_create_experiment("busy")
    quiet = store.get_or_create_experiment("quiet")
    store.create_runs(busy.id, [NewRun(id=f"r{i}") for i in range(5)])
    store.create_runs(busy.id, [NewRun(id="kid", parent_id="r0")])
    store.set_status("r1", "Completed")
    store.set_status("r2", "Failed")
    store.set_status("r3", "Completed")
    store.set_deleted("r4", True)
    found = {o.experiment.name: o for o in store.experiment_overview()}
    assert found["busy"].runs == 4  # the child and the deleted run are not counted
    assert found["busy"].statuses == {"Running": 1, "Completed": 2, "Failed": 1}
    assert found["quiet"].runs == 0 and found["quiet"].statuses == {}
    assert found["quiet"].last_activity == pytest.approx(quiet.created)
    assert found["busy"].last_activity >= busy.created
    names = [o.experiment.name for o in store.experiment_overview()]
    assert names.index("busy") < names.index("quiet")  # the latest activity first
    store.archive_experiment(quiet.id)
    assert "quiet" not in {o.experiment.name for o in store.experiment_overview()}
    assert "quiet" in {o.experiment.name for o in store.experiment_overview("All")}


def test_count_runs_counts_every_page_of_a_search(store):
    exp = store.get_or_create_experiment("count")
    store.create_runs(exp.id, [NewRun(id=f"c{i}", tags={"odd": str(i % 2)}) for i in range(30)])
    store.create_runs(exp.id, [NewRun(id="c-kid", parent_id="c0")])
    assert store.count_runs(RunQuery(experiment_id=exp.id)) == 31
    assert store.count_runs(RunQuery(experiment_id=exp.id, top_level_only=True)) == 30
    assert store.count_runs(RunQuery(experiment_id=exp.id, tags={"odd": "1"})) == 15
    text = parse_run_filter("tags.odd = 1 and number <= 10")
    assert store.count_runs(RunQuery(experiment_id=exp.id, conditions=text)) == 5
    assert store.count_runs(RunQuery(experiment_id=exp.id, tags={"odd": "7"})) == 0
    query = RunQuery(experiment_id=exp.id, conditions=(Condition("tag", "odd", "=", "0"),))
    assert store.count_runs(query) == len(store.search_runs(query, limit=100))
    with pytest.raises(UserError):
        store.count_runs(RunQuery(conditions=(Condition("tag", "odd", "~", "0"),)))


def test_status_history_notes_every_status_with_its_time(store):
    exp = store.get_or_create_experiment("history")
    before = time.time()
    store.create_runs(exp.id, [NewRun(id="h", status="NotStarted")])
    store.set_status("h", "Queued")
    store.set_status("h", "Running")
    store.set_status("h", "Running")  # no change: nothing noted
    store.set_status("h", "Completed")
    store.set_status("h", "Failed")  # a finished run stays finished
    history = store.status_history("h")
    assert [c.status for c in history] == ["NotStarted", "Queued", "Running", "Completed"]
    times = [c.time for c in history]
    assert times == sorted(times) and before - 1 <= times[0] <= time.time() + 1
    run = store.get_run("h")
    assert history[2].time == pytest.approx(run.start) and history[3].time == pytest.approx(run.end)
    with pytest.raises(NotFound):
        store.status_history("no-such-run")


def test_runs_sort_by_duration_running_ones_counting_to_now(store):
    exp = store.get_or_create_experiment("durations")
    store.create_runs(exp.id, [NewRun(id=f"d{i}") for i in range(3)])
    store.create_runs(exp.id, [NewRun(id="never", status="NotStarted")])
    time.sleep(0.05)
    store.set_status("d1", "Completed")  # the shortest
    time.sleep(0.2)
    store.set_status("d0", "Completed")
    time.sleep(0.1)
    # d2 still runs: its duration counts to now, the longest
    order = (Order("attribute", "duration", descending=True),)
    found = [r.id for r in store.search_runs(RunQuery(experiment_id=exp.id, order=order))]
    assert found == ["d2", "d0", "d1", "never"]  # a run that never started comes last
    order = (Order("attribute", "duration"),)
    found = [r.id for r in store.search_runs(RunQuery(experiment_id=exp.id, order=order))]
    assert found == ["d1", "d0", "d2", "never"]
