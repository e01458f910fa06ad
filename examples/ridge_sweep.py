"""Sweep Ridge regression's alpha on the diabetes data set, one child run per alpha.

    make demo                 # or: python examples/ridge_sweep.py

Uses the workspace of the nearest .runyard/config.json, or creates one in ./.runyard.
"""

from __future__ import annotations

import os
import tempfile

import joblib
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split

from runyard import Experiment, Workspace
from runyard.errors import ConfigNotFound

HERE = os.path.dirname(os.path.abspath(__file__))


def open_workspace() -> Workspace:
    try:
        return Workspace.from_config()
    except ConfigNotFound:
        ws = Workspace(".runyard")
        ws.write_config()
        return ws


def main() -> None:
    ws = open_workspace()
    exp = Experiment(ws, "ridge-sweep")
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    alphas = np.linspace(0.0, 1.0, 20)
    mses = []
    with exp.start_logging(snapshot_directory=HERE, outputs=False) as parent:
        parent.tag("model", "Ridge")
        parent.add_properties({"dataset": "sklearn.datasets.load_diabetes"})
        with tempfile.TemporaryDirectory() as scratch:
            for alpha in alphas:
                with parent.child_run(f"alpha={alpha:.3f}") as child:
                    model = Ridge(alpha=alpha).fit(X_train, y_train)
                    mse = mean_squared_error(y_test, model.predict(X_test))
                    child.log("alpha", alpha)  # numpy float64 -> float
                    child.log("mse", mse)
                    path = os.path.join(scratch, f"ridge_{alpha:.3f}.pkl")
                    joblib.dump(model, path)
                    child.upload_file(f"outputs/ridge_{alpha:.3f}.pkl", path)
                parent.log_row("sweep", alpha=alpha, mse=mse)
                mses.append(mse)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(alphas, mses, marker="o")
        ax.set_xlabel("alpha")
        ax.set_ylabel("mean squared error")
        ax.set_title("Ridge on diabetes: test MSE by alpha")
        parent.log_image("mse_by_alpha", plot=fig)
        plt.close(fig)
        best = int(np.argmin(mses))
        parent.log("best_alpha", alphas[best])
        parent.log("best_mse", mses[best])

    children = list(parent.get_children())
    print(f"workspace:   {ws.uri}")
    print(f"experiment:  {exp.name} (run number {parent.number})")
    print(f"parent run:  {parent.id} -> {parent.get_status()}")
    print(f"child runs:  {len(children)}, all {sorted({c.get_status() for c in children})}")
    print(f"best alpha:  {alphas[best]:.3f} with test MSE {mses[best]:.1f}")
    print(f"parent metrics: {sorted(parent.get_metrics())}")
    print(f"parent files:   {parent.get_file_names()}")
    example = children[-1]
    print(f"a child's metrics: {example.get_metrics()}")
    print(f"a child's files:   {example.get_file_names()}")
    print(f"artifacts are stored under {ws.artifacts_root}")


if __name__ == "__main__":
    main()
