"""get_metric_history returns list-like columns that read a long series without a Python
object per point; get_metrics(name=...) reads one series' values only."""

from __future__ import annotations

import json

import numpy
import pytest

from runyard import Experiment
from runyard.records import Column


@pytest.fixture
def run(ws):
    return Experiment(ws, "history").start_logging(snapshot_directory=None, outputs=False)


def test_columns_behave_like_lists(run):
    for i in range(5):
        run.log("loss", i / 2, step=i * 10)
    run.flush()
    for i in range(5, 8):
        run.log("loss", float(i), step=i * 10)
    history = run.get_metric_history("loss")
    assert history.steps == [0, 10, 20, 30, 40, 50, 60, 70]
    assert [0, 10, 20, 30, 40, 50, 60, 70] == history.steps  # noqa: SIM300 - reflected ==
    assert history.values[-1] == 7.0 and history.values[1:3] == [0.5, 1.0]
    assert len(history.times) == 8 and sorted(history.times) == list(history.times)
    assert history.steps != [0, 10]
    assert json.dumps(history.values.tolist()) == "[0.0, 0.5, 1.0, 1.5, 2.0, 5.0, 6.0, 7.0]"
    assert numpy.asarray(history.values).dtype == numpy.float64
    assert numpy.asarray(history.steps).tolist() == list(history.steps)
    assert "Column([0, 10" in repr(history.steps)


def test_consecutive_steps_across_flushes_stay_a_range(run):
    for i in range(3000):
        run.log("x", i, step=i)
        if i % 1000 == 999:
            run.flush()
    history = run.get_metric_history("x")
    assert history.steps == list(range(3000))
    assert isinstance(history.steps, Column) and isinstance(history.steps._data, range)
    assert numpy.asarray(history.values).dtype == numpy.int64
    assert history.values.tolist() == list(range(3000))


def test_mixed_values_and_gaps_come_back_exactly(run):
    run.log("m", 1, step=5)
    run.log("m", "text", step=3)
    run.flush()
    run.log("m", None)
    run.log("m", 2.5, step=100)
    history = run.get_metric_history("m")
    assert history.values == [1, "text", None, 2.5]
    assert history.steps == [5, 3, 2, 100]


def test_get_metrics_by_name_reads_that_series_only(run):
    run.log("a", 1.0)
    run.log("a", 2.0)
    run.log_row("t", x=1, y=2)
    assert run.get_metrics(name="a") == {"a": [1.0, 2.0]}
    assert run.get_metrics(name="t") == {"t": {"x": 1, "y": 2}}
    assert run.get_metrics(name="missing") == {}


def test_numpy_arrays_of_a_column_never_change_it(run):
    for i in range(4):
        run.log("loss", float(i))
    values = run.get_metric_history("loss").values
    mine = numpy.array(values)
    mine[0] = 99.0
    centred = numpy.asarray(values)
    centred -= 1.0  # what one does with an array from a list
    assert values == [0.0, 1.0, 2.0, 3.0]
    view = numpy.asarray(values, copy=False)
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 5.0
    assert values[0] == 0.0
