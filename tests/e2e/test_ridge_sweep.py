"""The README's demo, run as a user runs it, then checked through the SDK."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from runyard import Experiment, Workspace

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "ridge_sweep.py")


def test_ridge_sweep_records_everything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    done = subprocess.run(
        [sys.executable, EXAMPLE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "child runs:  20, all ['Completed']" in done.stdout
    ws = Workspace.from_config(tmp_path)
    assert ws.uri == str(tmp_path / ".runyard")
    (parent,) = Experiment(ws, "ridge-sweep").get_runs()
    assert parent.get_status() == "Completed"
    metrics = parent.get_metrics()
    assert len(metrics["sweep"]["alpha"]) == 20 and len(metrics["sweep"]["mse"]) == 20
    assert min(metrics["sweep"]["mse"]) == metrics["best_mse"]
    assert metrics["mse_by_alpha"].endswith(".png")
    image = parent.get_metrics("mse_by_alpha", populate=True)["mse_by_alpha"]
    assert image.data.startswith(b"\x89PNG")
    children = list(parent.get_children())
    assert len(children) == 20
    for child in children:
        m = child.get_metrics()
        assert type(m["alpha"]) is float and type(m["mse"]) is float
        assert f"outputs/ridge_{m['alpha']:.3f}.pkl" in child.get_file_names()
    with zipfile.ZipFile(parent.restore_snapshot(path=str(tmp_path / "s"))) as snapshot:
        assert "ridge_sweep.py" in snapshot.namelist()
