"""One suite for every Store implementation: SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time

import pytest

from runyard.errors import Conflict, NotFound, StoreError, UserError
from runyard.records import ArtifactRecord, NewRun, RunQuery, SeriesAppend
from runyard.store import iter_runs, open_store
from runyard.store.sql.schema import MIGRATIONS


def _database_of(store):
    """The SQL database behind ``store``; tests of the database itself skip on a server."""
    if not hasattr(store, "db"):
        pytest.skip("checks the database itself, which a server's client cannot reach")
    return store.db


def _exp(store, name="exp"):
    return store.get_or_create_experiment(name)


def _runs(store, exp, *specs):
    return store.create_runs(exp.id, [NewRun(**spec) for spec in specs])


def test_get_or_create_experiment_is_idempotent(store):
    a = store.get_or_create_experiment("one")
    b = store.get_or_create_experiment("one")
    assert a.id == b.id
    assert [e.name for e in store.list_experiments()] == ["one"]


def test_archive_frees_the_name_and_reactivate_refuses_a_clash(store):
    old = _exp(store, "name")
    store.archive_experiment(old.id)
    assert store.list_experiments("ActiveOnly") == []
    assert [e.id for e in store.list_experiments("ArchivedOnly")] == [old.id]
    new = store.get_or_create_experiment("name")
    assert new.id != old.id
    with pytest.raises(Conflict, match="already has that name"):
        store.reactivate_experiment(old.id)
    store.archive_experiment(new.id)
    assert store.reactivate_experiment(old.id).archived is None
    assert len(store.list_experiments("All")) == 2
    with pytest.raises(UserError, match="view_type"):
        store.list_experiments("Everything")


def test_experiment_tags(store):
    exp = _exp(store)
    store.set_experiment_tags(exp.id, {"a": "1", "b": None})
    store.set_experiment_tags(exp.id, {"a": "2"})
    store.remove_experiment_tags(exp.id, ["b"])
    assert store.get_experiment(exp.id).tags == {"a": "2"}


def test_run_numbers_increase_and_children_share_the_root(store):
    exp = _exp(store)
    (parent,) = _runs(store, exp, {"id": "p"})
    kids = _runs(store, exp, {"id": "c1", "parent_id": "p"}, {"id": "c2", "parent_id": "p"})
    (grandkid,) = _runs(store, exp, {"id": "g", "parent_id": "c1"})
    assert [parent.number, *(k.number for k in kids), grandkid.number] == [1, 2, 3, 4]
    assert grandkid.root_id == "p"
    assert store.get_run("g").parent_id == "c1"


def test_create_runs_refuses_duplicates_and_missing_parents_without_writing(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "a"})
    with pytest.raises(Conflict):
        _runs(store, exp, {"id": "b"}, {"id": "a"})
    with pytest.raises(NotFound):
        _runs(store, exp, {"id": "c", "parent_id": "nope"})
    ids = [r.id for r in iter_runs(store, RunQuery(experiment_id=exp.id))]
    assert ids == ["a"]
    (d,) = _runs(store, exp, {"id": "d"})
    assert d.number == 2


def test_get_run_unknown_id(store):
    with pytest.raises(NotFound, match="no run with id 'missing'"):
        store.get_run("missing")


def test_search_filters_and_newest_first_paging(store):
    exp = _exp(store)
    for i in range(7):
        _runs(
            store,
            exp,
            {
                "id": f"r{i}",
                "tags": {"even": str(i % 2 == 0), "flag": None},
                "properties": {"author": "me" if i < 3 else "you"},
                "type": "kind" if i == 6 else None,
            },
        )
    store.set_status("r1", "Completed")
    _runs(store, exp, {"id": "child", "parent_id": "r0"})
    query = RunQuery(experiment_id=exp.id, top_level_only=True)
    page = store.search_runs(query, limit=3)
    assert [r.id for r in page] == ["r6", "r5", "r4"]
    rest = store.search_runs(query, after=(page[-1].created, page[-1].number), limit=10)
    assert [r.id for r in rest] == ["r3", "r2", "r1", "r0"]
    both = RunQuery(
        experiment_id=exp.id,
        top_level_only=True,
        tags={"even": "True"},
        properties={"author": "me"},
    )
    assert [r.id for r in iter_runs(store, both, page=1)] == ["r2", "r0"]
    assert len(list(iter_runs(store, RunQuery(experiment_id=exp.id, tags={"flag": None})))) == 7
    status = RunQuery(experiment_id=exp.id, status="Completed")
    assert [r.id for r in iter_runs(store, status)] == ["r1"]
    assert [r.id for r in iter_runs(store, RunQuery(type="kind"))] == ["r6"]
    all_runs = list(iter_runs(store, RunQuery(experiment_id=exp.id)))
    assert len(all_runs) == 8
    assert all_runs[0].id == "child"
    assert all_runs[1].tags["flag"] is None


def test_subtree_query(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "root"}, {"id": "other"})
    _runs(store, exp, {"id": "a", "parent_id": "root"})
    _runs(store, exp, {"id": "b", "parent_id": "a"})
    ids = {r.id for r in iter_runs(store, RunQuery(root_id="root"))}
    assert ids == {"a", "b"}
    assert {r.id for r in iter_runs(store, RunQuery(root_id="a"))} == {"b"}


def test_terminal_status_never_changes(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r", "status": "NotStarted"})
    assert store.get_run("r").start is None
    started = store.set_status("r", "Running")
    assert started.start is not None and started.end is None
    done = store.set_status("r", "Failed", error={"error": {"message": "boom"}})
    assert done.status == "Failed" and done.end is not None
    again = store.set_status("r", "Completed")
    assert again.status == "Failed"
    assert again.error == {"error": {"message": "boom"}}
    assert again.end == done.end


def test_tags_merge_remove_and_key_only(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r", "tags": {"a": "1"}})
    store.set_tags("r", {"b": None, "a": "2"})
    store.remove_tags("r", ["nope"])
    assert store.get_run("r").tags == {"a": "2", "b": None}
    store.remove_tags("r", ["a"])
    assert store.get_run("r").tags == {"b": None}
    with pytest.raises(NotFound):
        store.set_tags("missing", {"a": "1"})


def test_properties_are_add_only(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r"})
    store.add_properties("r", {"a": "1"})
    store.add_properties("r", {"a": "1", "b": "2"})
    with pytest.raises(Conflict, match=r"'a'.*'1'.*'3'"):
        store.add_properties("r", {"c": "new", "a": "3"})
    assert store.get_run("r").properties == {"a": "1", "b": "2"}


def test_database_itself_refuses_to_change_a_property(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r", "properties": {"a": "1"}})

    def update(cur):
        cur.execute("UPDATE run_properties SET value = 'hacked' WHERE run_id = 'r'")

    def delete(cur):
        cur.execute("DELETE FROM run_properties WHERE run_id = 'r'")

    def upsert(cur):
        cur.execute(
            "INSERT INTO run_properties (run_id, key, value) VALUES ('r', 'a', 'x') "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"
        )

    def replace(cur):  # SQLite's REPLACE deletes without firing delete triggers
        if cur.dialect == "sqlite":
            cur.execute("INSERT OR REPLACE INTO run_properties VALUES ('r', 'a', 'y')")
        else:
            upsert(cur)

    def replace_short(cur):
        if cur.dialect == "sqlite":
            cur.execute("REPLACE INTO run_properties (run_id, key, value) VALUES ('r', 'a', 'z')")
        else:
            upsert(cur)

    database = _database_of(store)
    for body in (update, delete, upsert, replace, replace_short):
        with pytest.raises(StoreError, match="add-only"):
            database.write(body)
    assert store.get_run("r").properties == {"a": "1"}


def _append(name, values, kind="scalar", steps=None):
    steps = steps or [None] * len(values)
    now = time.time()
    return SeriesAppend(name, kind, steps, values, [now] * len(values))


def test_metric_values_keep_their_types(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r"})
    floats = [0.5, math.nan, math.inf, -math.inf]
    store.log_batch(
        "r",
        [
            _append("f", floats),
            _append("i", [1, 2, 2**62]),
            _append("mixed", [1, 2.5, "x", True, None, 2**70]),
            _append("rows", [{"x": 1, "y": "a"}], kind="table"),
        ],
    )
    store.log_batch("r", [_append("f", [1.0])])
    by_name = {h.name: h for h in store.get_histories(["r"])["r"]}
    f = by_name["f"].values
    assert f[0] == 0.5 and math.isnan(f[1]) and f[2:] == [math.inf, -math.inf, 1.0]
    assert by_name["f"].steps == [0, 1, 2, 3, 4]
    assert by_name["i"].values == [1, 2, 2**62]
    assert all(type(v) is int for v in by_name["i"].values)
    mixed = by_name["mixed"].values
    assert mixed == [1, 2.5, "x", True, None, 2**70]
    assert [type(v) for v in mixed[:4]] == [int, float, str, bool]
    assert by_name["rows"].values == [{"x": 1, "y": "a"}]


def test_series_summary_is_kept_up_to_date(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r"})
    store.log_batch("r", [_append("loss", [3.0, 1.0, math.nan], steps=[10, 20, 30])])
    store.log_batch("r", [_append("loss", [2.0, 5.0])])
    (summary,) = store.list_series(["r"])
    assert (summary.count, summary.min, summary.max, summary.last) == (5, 1.0, 5.0, 5.0)
    assert summary.last_step == 4
    history = store.get_history("r", "loss")
    assert history.steps == [10, 20, 30, 3, 4]


def test_kind_conflict_changes_nothing(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r"})
    store.log_batch("r", [_append("m", [1.0])])
    with pytest.raises(Conflict, match="scalar"):
        store.log_batch("r", [_append("other", [2.0]), _append("m", [{"a": 1}], kind="table")])
    histories = store.get_histories(["r"])["r"]
    assert [(h.name, h.values) for h in histories] == [("m", [1.0])]
    with pytest.raises(NotFound):
        store.get_history("r", "other")


def test_artifacts_are_write_once_but_logs_stream(store):
    _database_of(store)  # records without bytes: through a server, see tests/server
    exp = _exp(store)
    _runs(store, exp, {"id": "r"})
    store.add_artifact(ArtifactRecord("r", "outputs/a.txt", 1, "d1", time.time()))
    with pytest.raises(Conflict, match="write-once"):
        store.add_artifact(ArtifactRecord("r", "outputs/a.txt", 2, "d2", time.time()))
    store.add_artifact(ArtifactRecord("r", "logs/l.txt", 1, "d1", time.time(), True))
    store.add_artifact(ArtifactRecord("r", "logs/l.txt", 5, "d5", time.time(), True))
    assert store.get_artifact("r", "logs/l.txt").size == 5
    assert [a.path for a in store.list_artifacts("r", "outputs")] == ["outputs/a.txt"]
    assert [a.path for a in store.list_artifacts("r", "out")] == []
    assert len(store.list_artifacts("r")) == 2


def test_snapshots_are_recorded_once(store):
    _database_of(store)  # a record without its zip: through a server, see tests/server
    assert not store.has_snapshot("abc")
    store.add_snapshot("abc", 10, 2)
    store.add_snapshot("abc", 10, 2)
    assert store.has_snapshot("abc")


def test_reopening_does_not_migrate_again(ws_uri):
    uri, _ = ws_uri
    first = open_store(uri)
    first.get_or_create_experiment("kept")
    first.close()
    second = open_store(uri)
    assert [e.name for e in second.list_experiments()] == ["kept"]
    versions = second.db.read("SELECT version FROM runyard_schema")
    assert sorted(versions) == [(v,) for v, _ in MIGRATIONS]
    second.close()


def test_a_child_lives_in_its_parents_experiment(store):
    one, two = _exp(store, "one"), _exp(store, "two")
    _runs(store, one, {"id": "p"})
    with pytest.raises(UserError, match="another experiment"):
        _runs(store, two, {"id": "c", "parent_id": "p"})


def test_conditional_status_moves(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r", "status": "NotStarted"})
    assert store.set_status("r", "Queued", only_from=["NotStarted"]).status == "Queued"
    store.set_status("r", "CancelRequested")
    # a supervisor moving on from Queued must not overwrite the cancel request
    assert store.set_status("r", "Preparing", only_from=["Queued"]).status == "CancelRequested"


def test_silent_runs_become_not_responding_then_failed(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "beating", "heartbeat": True}, {"id": "interactive"})
    assert store.expire_silent_runs(60, 120) == 0
    time.sleep(0.3)
    assert store.expire_silent_runs(0.1, 60) == 1
    assert store.get_run("beating").status == "NotResponding"
    assert store.get_run("interactive").status == "Running"
    store.heartbeat("beating", "Running")
    assert store.get_run("beating").status == "Running"
    time.sleep(0.3)
    assert store.expire_silent_runs(0.1, 0.2) == 1  # straight to Failed
    failed = store.get_run("beating")
    assert failed.status == "Failed" and failed.end is not None
    assert "heartbeat" in failed.error["error"]["message"]
    assert store.expire_silent_runs(0.1, 0.2) == 0


@pytest.mark.parametrize("named_limit", [50_000, 3])  # matches named by id, or walked
def test_tag_and_property_filters_page_through_every_match_once(store, monkeypatch, named_limit):
    from runyard.store.sql import run_search

    monkeypatch.setattr(run_search, "MAX_NAMED_MATCHES", named_limit)
    exp, other = _exp(store), _exp(store, "other")
    (_parent,) = _runs(store, exp, {"id": "parent", "tags": {"g": "1"}})
    specs = [
        {
            "id": f"r{i:03d}",
            "tags": {"g": str(i % 3), "flag": None} if i % 2 else {"g": str(i % 3)},
            "properties": {"p": "x" if i % 5 else "y"},
            "parent_id": "parent" if i % 7 == 0 else None,
        }
        for i in range(120)
    ]
    _runs(store, exp, *specs)
    _runs(store, other, {"id": "elsewhere", "tags": {"g": "1", "flag": None}})

    def ids(**filters):
        query = RunQuery(experiment_id=exp.id, **filters)
        return [r.id for r in iter_runs(store, query, page=7, max_page=11)]

    def expected(keep):
        chosen = [s["id"] for s in specs if keep(s)]
        return sorted(chosen, reverse=True)  # created together: newest number first

    got = ids(tags={"g": "1", "flag": None}, properties={"p": "x"})
    want = expected(
        lambda s: s["tags"]["g"] == "1" and "flag" in s["tags"] and s["properties"]["p"] == "x"
    )
    assert got == want and len(set(got)) == len(got)
    top = ids(tags={"g": "1"}, top_level_only=True)
    assert top == [*expected(lambda s: s["tags"]["g"] == "1" and not s["parent_id"]), "parent"]
    assert ids(tags={"g": "9"}) == []
    children = ids(tags={"g": "0"}, parent_id="parent")
    assert children == expected(lambda s: s["tags"]["g"] == "0" and s["parent_id"])
    store.set_status("r001", "Completed")
    assert ids(tags={"g": "1"}, status="Completed") == ["r001"]
    under = [
        r.id for r in iter_runs(store, RunQuery(root_id="parent", tags={"flag": None}), page=2)
    ]
    assert under == expected(lambda s: s["parent_id"] and "flag" in s["tags"])


def test_create_runs_refuses_a_missing_experiment_and_a_taken_id_changing_nothing(store):
    exp = _exp(store)
    assert store.create_runs(exp.id, []) == []
    with pytest.raises(NotFound, match="no experiment"):
        _runs(store, type("E", (), {"id": "missing"})(), {"id": "a"})
    _runs(store, exp, {"id": "a"})
    with pytest.raises(Conflict, match="'a' already exists"):
        _runs(store, exp, {"id": "b"}, {"id": "a"})
    (c,) = _runs(store, exp, {"id": "c"})
    assert c.number == 2  # the refused batch took no numbers
    assert [r.id for r in store.search_runs(RunQuery(experiment_id=exp.id))] == ["c", "a"]


def test_a_batch_with_a_known_idempotency_key_is_stored_once(store):
    exp = _exp(store)
    _runs(store, exp, {"id": "r"}, {"id": "s"})
    batch = [_append("m", [1.0, 2.0])]
    assert store.log_batch("r", batch, key="k-1") is True
    assert store.log_batch("r", batch, key="k-1") is False  # sent again: skipped
    assert store.log_batch("s", batch, key="k-1") is False  # a key is one batch's only
    assert store.log_batch("r", batch, key="k-2") is True
    assert store.log_batch("r", batch) is True  # no key: always stored
    assert [s.count for s in store.list_series(["r", "s"])] == [6]
    with pytest.raises(UserError, match="batch key"):
        store.log_batch("r", batch, key="x" * 201)


def test_racing_writers_of_one_key_store_it_once(ws_uri):
    """Two connections (two server workers) sending one batch at once: one stores it."""
    import threading

    uri, _ = ws_uri
    first, second = open_store(uri), open_store(uri)
    exp = first.get_or_create_experiment("race")
    first.create_runs(exp.id, [NewRun(id="r")])
    results = []
    barrier = threading.Barrier(2)

    def send(store):
        barrier.wait()
        results.append(store.log_batch("r", [_append("m", [1.0] * 1000)], key="same"))

    threads = [threading.Thread(target=send, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert first.list_series(["r"])[0].count == 1000
    first.close()
    second.close()
