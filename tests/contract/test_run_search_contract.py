"""The Store contract of run searches with conditions, orders, offsets and soft delete:
every database, directly and through a real server."""

from __future__ import annotations

import math
import time

import pytest

from runyard.errors import NotFound, UserError
from runyard.records import Condition, NewRun, Order, RunQuery, SeriesAppend
from runyard.store import iter_runs


@pytest.fixture
def runs(store):
    """Six runs with metrics, tags and properties; returns (store, experiment)."""
    exp = store.get_or_create_experiment("search")
    other = store.get_or_create_experiment("elsewhere")
    specs = [
        ("a", 0.9, {"model": "ridge", "stage": "Prod"}, {"lr": "0.1"}),
        ("b", 0.5, {"model": "lasso", "stage": "prod"}, {"lr": "0.01"}),
        ("c", 0.7, {"model": "ridge_cv"}, {"lr": "0.1"}),
        ("d", None, {"model": "tree"}, {}),
        ("e", math.nan, {"model": "100%_sure"}, {"lr": "1"}),
        ("f", 0.2, {}, {"lr": "0.5"}),
    ]
    for rid, acc, tags, props in specs:
        store.create_runs(
            exp.id, [NewRun(id=rid, display_name=f"run {rid}", tags=tags, properties=props)]
        )
        if acc is not None:
            store.log_batch(rid, [SeriesAppend("acc", "scalar", [0], [acc], [time.time()])])
    store.create_runs(other.id, [NewRun(id="x", tags={"model": "ridge"})])
    store.log_batch("x", [SeriesAppend("acc", "scalar", [0], [0.99], [time.time()])])
    store.set_status("f", "Completed")
    return store, exp


def _ids(store, exp, *conditions, order=(), **fields):
    query = RunQuery(experiment_id=exp.id, conditions=conditions, order=order, **fields)
    return [r.id for r in store.search_runs(query, limit=100)]


def test_metric_conditions_compare_the_last_value(runs):
    store, exp = runs
    assert sorted(_ids(store, exp, Condition("metric", "acc", ">", 0.6))) == ["a", "c"]
    assert sorted(_ids(store, exp, Condition("metric", "acc", "<=", 0.5))) == ["b", "f"]
    # a run without the metric matches nothing, not even !=
    assert "d" not in _ids(store, exp, Condition("metric", "acc", "!=", 0.5))
    store.log_batch("b", [SeriesAppend("acc", "scalar", [1], [0.95], [time.time()])])
    assert sorted(_ids(store, exp, Condition("metric", "acc", ">", 0.6))) == ["a", "b", "c"]


def test_text_conditions_like_ilike_in(runs):
    store, exp = runs
    assert _ids(store, exp, Condition("tag", "stage", "=", "prod")) == ["b"]
    assert _ids(store, exp, Condition("tag", "stage", "!=", "prod")) == ["a"]
    assert sorted(_ids(store, exp, Condition("tag", "model", "LIKE", "ridge%"))) == ["a", "c"]
    assert _ids(store, exp, Condition("tag", "model", "LIKE", "RIDGE%")) == []
    assert sorted(_ids(store, exp, Condition("tag", "stage", "ILIKE", "PROD"))) == ["a", "b"]
    assert _ids(store, exp, Condition("tag", "model", "LIKE", "ridge_")) == []
    assert _ids(store, exp, Condition("tag", "model", "LIKE", "%\\%%")) == []
    assert _ids(store, exp, Condition("tag", "model", "LIKE", "100%")) == ["e"]
    assert _ids(store, exp, Condition("tag", "model", "LIKE", "1*")) == []  # no GLOB leaks
    assert sorted(_ids(store, exp, Condition("property", "lr", "IN", ("0.1", "1")))) == [
        "a",
        "c",
        "e",
    ]
    both = (Condition("property", "lr", "=", "0.1"), Condition("tag", "model", "=", "ridge"))
    assert _ids(store, exp, *both) == ["a"]
    assert _ids(store, exp, Condition("attribute", "status", "=", "Completed")) == ["f"]
    assert _ids(store, exp, Condition("attribute", "display_name", "ILIKE", "RUN D")) == ["d"]
    assert _ids(store, exp, Condition("attribute", "id", "NOT IN", ("a", "b", "c", "d", "e"))) == [
        "f"
    ]
    assert _ids(store, exp, Condition("attribute", "created", ">", time.time() + 3600)) == []
    assert _ids(store, exp, Condition("property", "lr", "IS NULL", None)) == ["d"]
    assert sorted(_ids(store, exp, Condition("tag", "stage", "IS NOT NULL", None))) == ["a", "b"]
    assert _ids(store, exp, Condition("metric", "acc", "IS NULL", None)) == ["d"]  # e: a NaN
    assert len(_ids(store, exp, Condition("attribute", "end", "IS NULL", None))) == 5


def test_orders_put_missing_values_last_both_ways(runs):
    store, exp = runs
    ascending = _ids(store, exp, order=(Order("metric", "acc"),))
    assert ascending[:4] == ["f", "b", "c", "a"] and set(ascending[4:]) == {"d", "e"}
    descending = _ids(store, exp, order=(Order("metric", "acc", descending=True),))
    assert descending[:4] == ["a", "c", "b", "f"] and set(descending[4:]) == {"d", "e"}
    by_lr = _ids(store, exp, order=(Order("property", "lr"), Order("attribute", "id", True)))
    assert by_lr == ["b", "c", "a", "f", "e", "d"]  # text order: "0.01" < "0.1" < "0.5" < "1"


def test_offset_pages_a_sorted_search(runs):
    store, exp = runs
    query = RunQuery(experiment_id=exp.id, order=(Order("attribute", "id"),))
    pages = [[r.id for r in store.search_runs(query, limit=4, offset=o)] for o in (0, 4, 8)]
    assert pages == [["a", "b", "c", "d"], ["e", "f"], []]
    with pytest.raises(UserError, match="offset"):
        store.search_runs(query, after=(1.0, 1), limit=4)


def test_bad_conditions_are_user_errors_that_say_why(runs):
    store, exp = runs
    for condition, message in [
        (Condition("metric", "acc", "LIKE", "0.%"), "compares text"),
        (Condition("metric", "acc", ">", "high"), "numbers"),
        (Condition("tag", "model", ">", "a"), "compares numbers"),
        (Condition("attribute", "colour", "=", "red"), "no attribute 'colour'"),
        (Condition("param", "lr", "=", "1"), "on 'param'|should be 'metric'"),
        (Condition("tag", "model", "IN", ()), "non-empty list"),
    ]:
        with pytest.raises(UserError, match=message):
            _ids(store, exp, condition)


def test_soft_deleted_runs_are_left_out_until_restored(runs):
    store, exp = runs
    deleted = store.set_deleted("a", True)
    assert deleted.deleted is not None
    assert store.get_run("a").deleted == deleted.deleted  # still readable by id
    everyone = RunQuery(experiment_id=exp.id)
    assert "a" not in [r.id for r in iter_runs(store, everyone)]
    tagged = RunQuery(experiment_id=exp.id, tags={"model": "ridge"})
    assert list(iter_runs(store, tagged)) == []
    gone = RunQuery(experiment_id=exp.id, lifecycle="deleted")
    assert [r.id for r in iter_runs(store, gone)] == ["a"]
    assert len(list(iter_runs(store, RunQuery(experiment_id=exp.id, lifecycle="all")))) == 6
    assert store.set_deleted("a", True).deleted == deleted.deleted  # deleting again: no change
    assert store.set_deleted("a", False).deleted is None
    assert "a" in [r.id for r in iter_runs(store, tagged)]
    with pytest.raises(NotFound):
        store.set_deleted("missing", True)
