"""Script runs against a PostgreSQL workspace: the same lifecycle, the same files."""

from __future__ import annotations

from runyard import Experiment, ScriptRunConfig, Workspace

from .conftest import Project, wait_until


def test_submit_and_cancel_on_postgres(pg_uri, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNYARD_MAX_CONCURRENT_RUNS", "2")
    ws = Workspace(pg_uri, artifacts=str(tmp_path / "artifacts"))
    root = tmp_path / "project"
    root.mkdir()
    project = Project(root, ws)
    project.script(
        "train.py",
        "from runyard import Run\nrun = Run.get_context()\nrun.log('mse', 1.5)\n"
        "open('outputs/m.txt', 'w').write('m')\nprint('trained')\n",
    )
    project.script("sleepy.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    run = project.exp.submit(ScriptRunConfig(str(root), "train.py"))
    assert run.wait_for_completion(wait_post_processing=True)["status"] == "Completed"
    assert run.get_metrics() == {"mse": 1.5}
    assert "outputs/m.txt" in run.get_file_names()
    assert "trained" in project.log_text(run)
    sleepy = project.exp.submit(ScriptRunConfig(str(root), "sleepy.py"))
    wait_until(lambda: "up" in project.log_text(sleepy), timeout=30)
    sleepy.cancel()
    assert sleepy.wait_for_completion(wait_post_processing=True)["status"] == "Canceled"
    assert [r.id for r in Experiment(ws, "scripts").get_runs()] == [sleepy.id, run.id]
