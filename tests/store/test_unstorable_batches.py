"""A metric batch that cannot be stored is the caller's mistake: a UserError, nothing stored.

The store is a door of its own (the server will hand it what clients send). A StoreError
here would make the SDK's buffer retry the batch forever; a half-checked batch (3 steps
for 1 value) would be stored and break every reader.
"""

from __future__ import annotations

import time

import pytest

from runyard.errors import UserError
from runyard.records import NewRun, SeriesAppend
from runyard.store import open_store


@pytest.fixture
def store(ws_uri):
    uri, _artifacts = ws_uri
    store = open_store(uri)
    experiment = store.get_or_create_experiment("batches")
    store.create_runs(experiment.id, [NewRun(id="r")])
    yield store
    store.close()


NOW = time.time()
BAD = {
    "step beyond 64 bits": SeriesAppend("a", "scalar", [2**70], [1.0], [NOW]),
    "numbered then beyond": SeriesAppend("b", "scalar", [None, 2**64], [1.0, 2.0], [NOW, NOW]),
    "value not JSON": SeriesAppend("c", "scalar", [None], [{1}], [NOW]),
    "more steps than values": SeriesAppend("d", "scalar", [None, None], [1.0], [NOW]),
    "time not a number": SeriesAppend("e", "scalar", [None], [1.0], ["soon"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_an_unstorable_batch_is_a_user_error_and_stores_nothing(store, case):
    good = SeriesAppend("good", "scalar", [None], [1.0], [NOW])
    with pytest.raises(UserError, match="metric"):
        store.log_batch("r", [good, BAD[case]])
    assert store.list_series(["r"]) == []
    store.log_batch("r", [good])
    assert store.get_history("r", "good").values == [1.0]


TEXT_WRITES = {
    "tag value": lambda s: s.set_tags("r", {"a": "b\x00"}),
    "tag key": lambda s: s.set_tags("r", {"a\udc80": "b"}),
    "property": lambda s: s.add_properties("r", {"a": "b\x00"}),
    "display name": lambda s: s.update_run("r", display_name="b\x00"),
    "new run": lambda s: s.create_runs(
        s.find_experiment("batches").id, [NewRun(id="r2", description="\x00")]
    ),
    "experiment tag": lambda s: s.set_experiment_tags(
        s.find_experiment("batches").id, {"a": "b\x00"}
    ),
    "experiment name": lambda s: s.get_or_create_experiment("x\x00"),
}


@pytest.mark.parametrize("case", sorted(TEXT_WRITES))
def test_the_store_refuses_text_no_database_keeps_alike(store, case):
    """SQLite kept NUL where PostgreSQL refused it; both refuse it now, at the store too."""
    with pytest.raises(UserError):
        TEXT_WRITES[case](store)
    run = store.get_run("r")
    assert run.tags == {} and run.properties == {} and run.display_name is None
    assert [e.name for e in store.list_experiments()] == ["batches"]


def test_metrics_of_more_runs_than_a_query_takes_parameters(store):
    """PostgreSQL takes at most 65,535 parameters: a sweep's recursive get_metrics failed."""
    store.log_batch("r", [SeriesAppend("acc", "scalar", [None], [0.5], [NOW])])
    ids = [f"absent-{i}" for i in range(70_000)] + ["r"]
    assert [s.name for s in store.list_series(ids)] == ["acc"]
    histories = store.get_histories(ids, values_only=True)
    assert list(histories) == ["r"] and list(histories["r"][0].values) == [0.5]
