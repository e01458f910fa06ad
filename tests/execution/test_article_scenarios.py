"""The script-run scenarios of the Azure ML articles "start, monitor and cancel runs" and
"log metrics during training runs", written as their readers write them."""

from __future__ import annotations

import pytest

from runyard import Run, ScriptRunConfig

from .conftest import new_project, wait_until


@pytest.fixture(params=["local", "server"])
def project(request, tmp_path, monkeypatch):
    """The articles' scenarios on a local workspace and on one kept by a runyard server."""
    yield from new_project(tmp_path, monkeypatch, served=request.param == "server")


HELLO_WITH_DELAY = """
import time
print("Hello from the script")
time.sleep(60)
print("never printed: the run is canceled first")
"""


def test_submit_a_script_that_sleeps_and_cancel_it(project):
    project.script("hello_with_delay.py", HELLO_WITH_DELAY)
    src = ScriptRunConfig(source_directory=str(project.root), script="hello_with_delay.py")
    local_script_run = project.exp.submit(src)
    assert local_script_run.get_status() in (
        "NotStarted",
        "Queued",
        "Preparing",
        "Starting",
        "Running",
    )
    wait_until(lambda: local_script_run.get_status() == "Running", timeout=30)
    local_script_run.cancel()
    assert local_script_run.get_status() in ("CancelRequested", "Canceled")
    local_script_run.wait_for_completion(wait_post_processing=True)
    assert local_script_run.get_status() == "Canceled"


def test_mark_a_submitted_run_failed(project):
    project.script("hello_with_delay.py", HELLO_WITH_DELAY)
    src = ScriptRunConfig(source_directory=str(project.root), script="hello_with_delay.py")
    local_script_run = project.exp.submit(src)
    local_script_run.fail()
    assert local_script_run.get_status() == "Failed"
    wait_until(lambda: "system_logs/supervisor.txt" in local_script_run.get_file_names())


FIVE_CHILDREN = """
from runyard import Run
run = Run.get_context()
for c in range(5):
    with run.child_run() as child:
        child.log(name="Hello from child run", value=c)
        print(f"child {c} done")
"""


def test_a_script_that_makes_five_child_runs(project, capsys):
    project.script("parent.py", FIVE_CHILDREN)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "parent.py"))
    details = run.wait_for_completion(show_output=True)
    assert details["status"] == "Completed"
    assert "child 4 done" in capsys.readouterr().out
    children = list(run.get_children())
    assert len(children) == 5
    assert {c.get_status() for c in children} == {"Completed"}
    values = sorted(c.get_metrics()["Hello from child run"] for c in children)
    assert values == [0, 1, 2, 3, 4]


PARENT = """
from runyard import Run, ScriptRunConfig
run = Run.get_context()
for alpha in [0.1, 0.5, 1.0]:
    run.submit_child(ScriptRunConfig(source_directory=".", script="child.py",
                                     arguments=["--alpha", alpha]))
for child in run.get_children():
    child.wait_for_completion(wait_post_processing=True)
    print("child", child.id, child.get_status(), child.get_metrics())
"""

CHILD = """
import argparse
from runyard import Run
parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float)
args = parser.parse_args()
run = Run.get_context()
run.log("alpha", args.alpha)
run.log("parent", run.parent.id)
"""


def test_a_parent_script_submits_three_child_scripts_and_waits(project):
    project.ws.max_concurrent_runs = 1  # the waiting parent lends its slot: no deadlock
    project.script("parent.py", PARENT)
    project.script("child.py", CHILD)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "parent.py"))
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    children = list(run.get_children())
    assert len(children) == 3
    assert sorted(c.get_metrics()["alpha"] for c in children) == [0.1, 0.5, 1.0]
    assert {c.get_metrics()["parent"] for c in children} == {run.id}
    assert {c.type for c in children} == {"azureml.scriptrun"}
    assert project.log_text(run).count("Completed") == 3
    assert Run.get(project.ws, children[0].id).parent.id == run.id


HELPER = """
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

def load_data():
    X, y = load_diabetes(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0)
"""

TRAIN = """
import os
import joblib
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from runyard import Run
from utils import load_data

run = Run.get_context()
X_train, X_test, y_train, y_test = load_data()
os.makedirs("./outputs", exist_ok=True)
for alpha in np.arange(0.0, 1.0, 0.25):
    model = Ridge(alpha=alpha).fit(X_train, y_train)
    mse = mean_squared_error(y_test, model.predict(X_test))
    run.log("alpha", alpha)
    run.log("mse", mse)
    model_file_name = "ridge_{0:.2f}.pkl".format(alpha)
    joblib.dump(value=model, filename=os.path.join("./outputs/", model_file_name))
    run.upload_file(name="outputs/" + model_file_name,
                    path_or_stream=os.path.join("./outputs/", model_file_name))
    print("alpha is {0:.2f}, and mse is {1:0.2f}".format(alpha, mse))
"""


def test_train_script_with_a_helper_module_sweeps_ridge(project):
    project.script("utils.py", HELPER)
    project.script("train.py", TRAIN)
    run = project.exp.submit(ScriptRunConfig(str(project.root), "train.py"))
    assert run.wait_for_completion(show_output=True)["status"] == "Completed"
    metrics = run.get_metrics()
    assert metrics["alpha"] == [0.0, 0.25, 0.5, 0.75]
    assert len(metrics["mse"]) == 4 and all(type(m) is float for m in metrics["mse"])
    assert sorted(n for n in run.get_file_names() if n.startswith("outputs/")) == [
        "outputs/ridge_0.00.pkl", "outputs/ridge_0.25.pkl", "outputs/ridge_0.50.pkl",
        "outputs/ridge_0.75.pkl",
    ]  # fmt: skip
    assert "alpha is 0.75" in project.log_text(run)
