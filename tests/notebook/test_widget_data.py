"""What RunDetails draws, on every kind of workspace (a server's included): the widget's
data with the reference's keys, and its views drawn from it (ipywidgets, no kernel)."""

from __future__ import annotations

import io

import pytest

from runyard import Experiment

pytest.importorskip("ipywidgets", reason="needs the notebook extra (ipywidgets, plotly)")
pytest.importorskip("plotly", reason="needs the notebook extra (ipywidgets, plotly)")

from runyard.notebook.widget import RunDetails, _View, refresh_seconds


def test_widget_data_and_view_of_a_failed_run(ws):
    run = Experiment(ws, "widget data").start_logging(display_name="w", snapshot_directory=None)
    for step in range(5000):
        run.log("loss", 1 / (step + 1), step=step)
    run.log("loss", 50.0, step=5000)  # a spike the downsample keeps
    run.log("accuracy", 0.5)
    run.log("phase", "warmup")  # text: no chart, no failure
    run.upload_file(
        "user_logs/std_log.txt", io.BytesIO(b"".join(b"line %d\n" % i for i in range(20_000)))
    )
    child = run.child_run(name="kid")
    child.complete()
    run.fail(error_details="<b>broken</b>")
    details = RunDetails(run)
    data = details.get_widget_data()
    assert data["status"] == "Failed" and data["run_id"] == run.id
    assert data["workbench_run_details_uri"] == run.get_portal_url()
    props = data["run_properties"]
    assert props["run_number"] == run.number and props["run_duration"].count(":") == 2
    assert "user_logs/std_log.txt" in props["log_files"]
    (loss,) = data["run_metrics"]
    assert loss["name"] == "loss" and len(loss["categories"]) <= 1200
    assert 50.0 in loss["series"][0]["data"] and 5000 in loss["categories"]
    assert data["single_values"] == {"accuracy": 0.5}
    assert data["run_logs"].endswith("Error occurred: <b>broken</b>")
    assert "line 19999" in data["run_logs"] and len(data["run_logs"]) < 70_000  # the tail
    assert [c["run_id"] for c in data["child_runs"]] == [child.id]
    details._view = _View()
    details.refresh()
    view = details._view
    assert "(Failed)" in view.header.value and "#c53030" in view.header.value
    assert "&lt;b&gt;broken" in view.log.value and "<b>broken" not in view.log.value
    assert list(view.figures) == ["loss"] and details.refreshes == 1


def test_refresh_cadence_follows_the_reference(monkeypatch):
    for name in ("RUNYARD_WIDGET_REFRESH_SECONDS", "AZUREML_OVERRIDE_ALL_WIDGET_REFRESH_TIME"):
        monkeypatch.delenv(name, raising=False)
    assert refresh_seconds(0) == 5.0 and refresh_seconds(3600) == 60.0
    assert refresh_seconds(1800) == pytest.approx(32.5) and refresh_seconds(10**6) == 60.0
    monkeypatch.setenv("AZUREML_OVERRIDE_ALL_WIDGET_REFRESH_TIME", "2")
    assert refresh_seconds(0) == 2.0
    monkeypatch.setenv("RUNYARD_WIDGET_REFRESH_SECONDS", "0.5")
    assert refresh_seconds(0) == 0.5
    from runyard.errors import UserError

    for bad in ("soon", "-1", "nan", "0"):
        monkeypatch.setenv("RUNYARD_WIDGET_REFRESH_SECONDS", bad)
        with pytest.raises(UserError, match="RUNYARD_WIDGET_REFRESH_SECONDS"):
            refresh_seconds(0)
