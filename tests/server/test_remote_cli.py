"""Every CLI command on a workspace kept by a real runyard server, as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_server import serve_workspace

RUNYARD = os.path.join(os.path.dirname(sys.executable), "runyard")


@pytest.fixture
def served(tmp_path):
    """(URL, admin token, environment for the CLI) of a server over a fresh workspace."""
    with serve_workspace(str(tmp_path / "ws"), auth=True) as (url, store):
        _, secret = store.create_token("ops", "admin")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
        env.update(
            RUNYARD_TOKEN=secret,
            RUNYARD_SPOOL_DIR=str(tmp_path / "spool"),
            XDG_CONFIG_HOME=str(tmp_path / "config"),
            XDG_CACHE_HOME=str(tmp_path / "cache"),
        )
        yield url, secret, env


def cli(env, cwd: Path, *args: str, code: int = 0, stdin: str | None = None) -> str:
    done = subprocess.run(
        [RUNYARD, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
        input=stdin,
    )  # fmt: skip
    assert done.returncode == code, (done.stdout, done.stderr)
    return done.stdout if code == 0 else done.stderr


def test_the_cli_works_unchanged_against_a_server(served, tmp_path):
    url, _, env = served
    project = tmp_path / "project"
    cli(env, tmp_path, "init", "--path", str(project), "-e", "remote", "--workspace", url)
    config = json.loads((project / ".runyard" / "config.json").read_text())
    assert config["uri"] == url and "artifacts" not in config
    (project / "train.py").write_text(
        "from runyard import Run\n"
        "import os\n"
        "run = Run.get_context()\n"
        "run.log('loss', 0.5)\n"
        "run.log_list('acc', [0.1, 0.2])\n"
        "os.makedirs('outputs', exist_ok=True)\n"
        "open('outputs/model.txt', 'w').write('weights')\n"
        "print('trained')\n"
    )
    submitted = json.loads(cli(env, project, "run", "submit-script", "--async", "train.py"))
    run_id = submitted["run_id"]
    monitored = cli(env, project, "run", "monitor-logs", "-r", run_id)
    assert "trained" in monitored and '"Completed"' in monitored
    shown = json.loads(cli(env, project, "run", "show", "-r", run_id))
    assert shown["status"] == "Completed" and shown["created_by"] == {"user_name": "ops"}
    listed = json.loads(cli(env, project, "run", "list", "--query", "[].run_id"))
    assert listed == [run_id]
    assert json.loads(cli(env, project, "run", "metrics", "-r", run_id)) == {
        "loss": 0.5,
        "acc": [0.1, 0.2],
    }
    cli(env, project, "run", "update", "-r", run_id, "--add-tag", "best=yes")
    assert json.loads(cli(env, project, "run", "show", "-r", run_id))["tags"]["best"] == "yes"
    out = tmp_path / "out"
    cli(env, project, "run", "download", "-r", run_id, "--prefix", "outputs", "-d", str(out))
    assert (out / "outputs" / "model.txt").read_text() == "weights"
    logs = tmp_path / "logs"
    cli(env, project, "run", "download-logs", "-r", run_id, "-d", str(logs))
    assert "trained" in (logs / "user_logs" / "std_log.txt").read_text()
    assert [e["name"] for e in json.loads(cli(env, project, "experiment", "list"))] == ["remote"]
    cli(env, project, "experiment", "archive", "-e", "remote")
    assert json.loads(cli(env, project, "experiment", "list")) == []
    assert json.loads(cli(env, project, "sync"))["batches"] == 0


def test_errors_cross_the_wire_as_the_same_one_line_messages(served, tmp_path):
    url, _, env = served
    error = cli(env, tmp_path, "run", "show", "-r", "nosuchrun", "--workspace", url, code=1)
    assert error.startswith("error: no run with id 'nosuchrun'")
    nobody = {**env, "RUNYARD_TOKEN": "ry_wrong"}
    error = cli(nobody, tmp_path, "experiment", "list", "--workspace", url, code=1)
    assert "not known to this runyard server" in error


def test_tokens_login_and_roles_through_the_cli(served, tmp_path):
    url, _, env = served
    made = json.loads(
        cli(env, tmp_path, "token", "create", "--name", "viewer", "--role", "reader",
            "--expires", "30d", "--workspace", url)
    )  # fmt: skip
    secret = made["token"]
    names = [t["name"] for t in json.loads(cli(env, tmp_path, "token", "list", "--workspace", url))]
    assert "viewer" in names and secret not in json.dumps(names)
    user = {k: v for k, v in env.items() if k != "RUNYARD_TOKEN"}
    cli(user, tmp_path, "login", url, stdin=secret + "\n")
    kept = Path(env["XDG_CONFIG_HOME"]) / "runyard" / "credentials.json"
    assert oct(kept.stat().st_mode & 0o777) == "0o600"
    assert json.loads(cli(user, tmp_path, "experiment", "list", "--workspace", url)) == []
    error = cli(user, tmp_path, "token", "list", "--workspace", url, code=1)
    assert "has role reader; this request needs admin" in error
    cli(env, tmp_path, "token", "revoke", "viewer", "--workspace", url)
    error = cli(user, tmp_path, "experiment", "list", "--workspace", url, code=1)
    assert "revoked" in error
