"""RunDetails in a real notebook: nbclient runs the cells in a real kernel while a real
script run goes on; the widget's state follows the run and its polling stops at the
terminal status."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the notebook test extra (nbclient)")
nbclient = pytest.importorskip("nbclient", reason="needs the notebook test extra (nbclient)")
pytest.importorskip("ipywidgets", reason="needs the notebook extra (ipywidgets, plotly)")
pytest.importorskip("plotly", reason="needs the notebook extra (ipywidgets, plotly)")

SCRIPT = """
import time
from runyard import Run
run = Run.get_context()
for i in range(30):
    run.log("loss", 1 / (i + 1))
    print(f"epoch {i}", flush=True)
    time.sleep(0.1)
run.log("accuracy", 0.93)
"""

CELLS = [
    """
import json, os, time
os.environ["RUNYARD_WIDGET_REFRESH_SECONDS"] = "0.2"
from runyard import Experiment, ScriptRunConfig, Workspace
from runyard.widgets import RunDetails
ws = Workspace({workspace!r})
run = Experiment(ws, "widget").submit(ScriptRunConfig({source!r}, "train.py"))
details = RunDetails(run)
details.show()
""",
    """
deadline = time.time() + 60
while details.status not in ("Running",) and time.time() < deadline:
    time.sleep(0.05)
while "loss" not in details._view.figures and time.time() < deadline:
    time.sleep(0.05)
print(json.dumps({{"status": details.status, "polling": details.polling,
                  "refreshes": details.refreshes}}))
""",
    """
deadline = time.time() + 120
while details.polling and time.time() < deadline:
    time.sleep(0.1)
done = details.refreshes
time.sleep(1.0)
data = details.get_widget_data()
print(json.dumps({{"status": details.status, "polling": details.polling, "refreshes": done,
                  "after": details.refreshes, "points": len(data["run_metrics"][0]["categories"]),
                  "single": data["single_values"], "log": data["run_logs"][-200:],
                  "header": details._view.header.value,
                  "chart": len(details._view.figures["loss"].data[0].y),
                  "thread_alive": details._thread.is_alive()}}))
""",
]


def _kernel(tmp_path) -> str:
    """A kernelspec of this test's Python, found through JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "runyard-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "runyard test", "language": "python"})
    )
    return str(tmp_path / "jupyter")


def test_widget_follows_a_script_run_and_stops_polling_when_it_ends(
    local_ws, tmp_path, monkeypatch
):
    source = tmp_path / "project"
    source.mkdir()
    (source / "train.py").write_text(textwrap.dedent(SCRIPT))
    monkeypatch.setenv("JUPYTER_PATH", _kernel(tmp_path))
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            textwrap.dedent(c).format(workspace=local_ws.uri, source=str(source))
        )
        for c in CELLS
    ]
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="runyard-test", store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )  # fmt: skip
    client.execute()
    shown = notebook.cells[0].outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in shown)
    during = json.loads(notebook.cells[1].outputs[0]["text"])
    assert during["status"] == "Running" and during["polling"] is True and during["refreshes"] >= 2
    after = json.loads(notebook.cells[2].outputs[0]["text"])
    assert after["status"] == "Completed" and after["polling"] is False
    assert after["thread_alive"] is False and after["after"] == after["refreshes"]  # it stopped
    assert after["points"] == 30 and after["single"] == {"accuracy": 0.93}
    assert "epoch 29" in after["log"] and after["log"].endswith("Run is completed.")
    assert "(Completed)" in after["header"] and "/runs/" in after["header"]
    # the widgets' state as the notebook keeps it: the header says Completed
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    values = [w["state"].get("value", "") for w in state.values()]
    assert any("(Completed)" in str(v) for v in values)
    charts = [w["state"]["_widget_data"] for w in state.values() if "_widget_data" in w["state"]]
    assert len(charts) == 1 and charts[0][0]["name"] == "loss"  # the chart is a widget
    assert after["chart"] == 30  # and it was drawn again with every point
