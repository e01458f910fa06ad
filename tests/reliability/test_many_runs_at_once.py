"""Found by the studio's benchmark: ``create_runs`` of 5,000 runs in one call failed on
PostgreSQL (a statement takes at most 65,535 parameters; one INSERT had 85,000), though
the API takes up to 10,000 runs a call. Every database, directly and through a server."""

from __future__ import annotations

from tests.contract.conftest import store  # noqa: F401 - the fixture: each database, direct and served

from runyard.records import NewRun, RunQuery


def test_ten_thousand_runs_in_one_call(store):  # noqa: F811
    exp = store.get_or_create_experiment("bulk")
    runs = [NewRun(id=f"bulk-{i}", tags={"i": str(i)}, heartbeat=i % 2 == 0) for i in range(10_000)]
    made = store.create_runs(exp.id, runs)
    assert len(made) == 10_000 and [r.number for r in made] == list(range(1, 10_001))
    assert store.count_runs(RunQuery(experiment_id=exp.id)) == 10_000
    assert store.get_run("bulk-9999").tags == {"i": "9999"}
