from __future__ import annotations

import json
import math

import numpy as np
import pytest

from runyard import Experiment, UserError


@pytest.fixture
def run(ws):
    return Experiment(ws, "metrics").start_logging(snapshot_directory=None)


def test_get_metrics_shapes(run):
    run.log("once", 1)
    for v in (1, 2.5, 3):
        run.log("many", v)
    run.log_list("l", [1, 2, 3])
    run.log_list("single", [5])
    run.log_row("row", x=1, y=2)
    run.log_row("rows", x=1, y=2)
    run.log_row("rows", x=3, y=4)
    run.log_table("table", {"a": [1, 2], "b": ["p", "q"]})
    run.log("flag", True)
    run.log("text", "hello")
    metrics = run.get_metrics()
    assert metrics == {
        "once": 1,
        "many": [1, 2.5, 3],
        "l": [1, 2, 3],
        "single": 5,
        "row": {"x": 1, "y": 2},
        "rows": {"x": [1, 3], "y": [2, 4]},
        "table": {"a": [1, 2], "b": ["p", "q"]},
        "flag": True,
        "text": "hello",
    }
    assert type(metrics["once"]) is int and type(metrics["many"][1]) is float
    assert run.get_metrics("many") == {"many": [1, 2.5, 3]}
    assert run.get_metrics("absent") == {}


def test_numpy_values_are_converted(run):
    run.log("i64", np.int64(5))
    run.log("f32", np.float32(0.5))
    run.log("b", np.bool_(True))
    run.log("zero_d", np.array(2.5))
    run.log_list("arr", np.array([1, 2, 3], dtype=np.int64))
    run.log("step_np", 1.0, step=np.int64(7))
    metrics = run.get_metrics()
    assert metrics["i64"] == 5 and type(metrics["i64"]) is int
    assert metrics["f32"] == 0.5 and type(metrics["f32"]) is float
    assert metrics["b"] is True and metrics["zero_d"] == 2.5
    assert metrics["arr"] == [1, 2, 3] and all(type(v) is int for v in metrics["arr"])
    assert run.get_metric_history("step_np").steps == [7]


def test_numpy_scalars_without_a_python_type_are_converted_or_refused(run):
    run.log("ld", np.longdouble(1.5))  # .item() gives a longdouble back: was RecursionError
    run.log_list("lds", np.array([0.5, 2.0], dtype=np.longdouble))
    with pytest.raises(UserError, match="clongdouble"):
        run.log("c", np.clongdouble(1))
    metrics = run.get_metrics()
    assert metrics == {"ld": 1.5, "lds": [0.5, 2.0]} and type(metrics["ld"]) is float


def test_nan_and_infinities_come_back_unchanged(run):
    for v in (math.nan, math.inf, -math.inf, 1.0):
        run.log("odd", v)
    run.log_list("odd_list", [math.nan, np.float64("inf")])
    values = run.get_metrics()["odd"]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.0]
    odd_list = run.get_metrics()["odd_list"]
    assert math.isnan(odd_list[0]) and odd_list[1] == math.inf


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.log("m", [1, 2]), "Use run.log_list instead"),
        (lambda r: r.log("m", (1, 2)), "Use run.log_list instead"),
        (lambda r: r.log("m", np.array([1, 2])), "Use run.log_list instead"),
        (lambda r: r.log("m", {"a": 1}), "log_row"),
        (lambda r: r.log("m", object()), "not supported"),
        (lambda r: r.log("m", 1, step=1.5), "step must be an int"),
        (lambda r: r.log("", 1), "must not be empty"),
        (lambda r: r.log("x" * 256, 1), "limit is 255"),
        (lambda r: r.log("new\nline", 1), "control character"),
        (lambda r: r.log(5, 1), "must be a string"),
        (lambda r: r.log_list("m", []), "at least one value"),
        (lambda r: r.log_list("m", [1, [2]]), "log_list"),
        (lambda r: r.log_list("m", "abc"), "list of values"),
        (lambda r: r.log_row("m", x=[1, 2]), "log_list"),
        (lambda r: r.log_row("m"), "needs columns"),
        (lambda r: r.log_table("m", {"a": [1, 2], "b": [1]}), "different lengths"),
        (lambda r: r.log_table("m", [1, 2]), "dict of columns"),
    ],
)
def test_bad_metric_input_is_a_user_error_and_stores_nothing(run, call, message):
    with pytest.raises(UserError, match=message):
        call(run)
    assert run.get_metrics() == {}


def test_kinds_do_not_mix_under_one_name(run):
    run.log("m", 1)
    with pytest.raises(UserError, match="already holds scalar"):
        run.log_row("m", x=1)
    run.flush()
    other = type(run)(run.experiment, run.id)  # a fresh handle learns the kind from the store
    with pytest.raises(UserError, match="already holds scalar"):
        other.log_list("m", [1])
    assert run.get_metrics() == {"m": 1}


def test_metric_history_steps_values_times(run):
    run.log("loss", 0.9, step=10)
    run.log("loss", 0.5, step=20)
    run.log("auto", 1.0)
    run.log("auto", 2.0)
    history = run.get_metric_history("loss")
    assert history.steps == [10, 20] and history.values == [0.9, 0.5]
    assert len(history.times) == 2 and history.times[0] <= history.times[1]
    assert run.get_metric_history("auto").steps == [0, 1]


def test_recursive_metrics_list_only_runs_with_metrics(run):
    run.log("top", 1)
    quiet = run.child_run("quiet")
    busy = run.child_run("busy")
    busy.log("m", 2)
    grandchild = busy.child_run("deep")
    grandchild.log_list("l", [1, 2])
    result = run.get_metrics(recursive=True)
    assert result == {run.id: {"top": 1}, busy.id: {"m": 2}, grandchild.id: {"l": [1, 2]}}
    assert quiet.id not in result


def test_log_image_from_path_and_plot(run, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    (tmp_path / "work" / "plots").mkdir()
    fig.savefig(tmp_path / "work" / "plots" / "curve.png")
    run.log_image("curve", path="plots/curve.png")
    run.log_image("live", plot=fig)
    plt.close(fig)
    names = run.get_file_names()
    assert "plots/curve.png" in names
    assert any(n.startswith("live_") and n.endswith(".png") for n in names)
    metrics = run.get_metrics()
    assert metrics["curve"] == f"aml://artifactId/ExperimentRun/dcid.{run.id}/plots/curve.png"
    populated = run.get_metrics("curve", populate=True)["curve"]
    assert populated.data.startswith(b"\x89PNG")


def test_log_image_bad_input(run, tmp_path):
    (tmp_path / "work" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="not an image"):
        run.log_image("x", path="notes.txt")
    with pytest.raises(UserError, match="exactly one"):
        run.log_image("x")
    with pytest.raises(UserError, match="not a file"):
        run.log_image("x", path="missing.png")
    assert run.get_file_names() == [] and run.get_metrics() == {}


def test_json_chart_metrics(run):
    cm = {
        "schema_type": "confusion_matrix",
        "schema_version": "1.0.0",
        "data": {"class_labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]},
    }
    run.log_confusion_matrix("cm", json.dumps(cm))
    run.log_residuals("res", {"data": {"bin_edges": [0, 1, 2], "bin_counts": [3, 4]}})
    run.log_predictions(
        "pred",
        {"bin_averages": [1], "bin_errors": [0.1], "bin_counts": [2], "bin_edges": [0, 1]},
    )
    run.log_accuracy_table(
        "acc",
        {
            "data": {
                "probability_tables": [],
                "percentile_tables": [],
                "probability_thresholds": [],
                "percentile_thresholds": [],
                "class_labels": [],
            }
        },
    )
    stored = json.loads(run.get_metrics("cm", populate=True)["cm"].data)
    assert stored == cm
    residuals = json.loads(run.get_metrics("res", populate=True)["res"].data)
    assert residuals["schema_type"] == "residuals" and residuals["schema_version"] == "1.0.0"
    assert set(run.get_file_names()) == {"cm", "res", "pred", "acc"}
    with pytest.raises(UserError, match="Invalid JSON provided"):
        run.log_confusion_matrix("bad", "{nope")
    with pytest.raises(UserError, match="missing matrix"):
        run.log_confusion_matrix("bad", {"class_labels": []})
    with pytest.raises(UserError, match="already exists"):
        run.log_confusion_matrix("cm", cm)


def test_description_is_kept(run):
    run.log("m", 1, description="the m")
    run.flush()
    (summary,) = run._store.list_series([run.id])
    assert summary.description == "the m"


def test_points_logged_after_complete_are_kept(run):
    run.complete()
    run.log("late", 1.0)
    assert run.get_metrics() == {"late": 1.0}


def test_a_dropped_run_handle_still_writes_its_points(ws):
    import gc

    from runyard import Run
    from runyard._logging_buffer import flush_all

    run = Experiment(ws, "metrics").start_logging(snapshot_directory=None)
    run_id = run.id
    for i in range(100):
        run.log("m", i)
    del run
    gc.collect()
    flush_all()
    assert len(Run.get(ws, run_id).get_metric_history("m").values) == 100


def test_threads_logging_a_new_name_at_once_lose_nothing(run):
    import threading

    start = threading.Barrier(4)

    def worker():
        start.wait()
        for i in range(2000):
            run.log("shared", float(i))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(run.get_metric_history("shared").values) == 8000
