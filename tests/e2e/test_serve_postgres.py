"""End to end: a real ``runyard serve`` subprocess with 2 workers on a PostgreSQL schema,
used as a team would: the SDK, a submitted script run, the CLI, ``runyard login``, and a
SIGTERM that lets the request in flight finish."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.reliability.test_server_faults import ServeProcess, clean_env, free_port

from runyard import Experiment, ScriptRunConfig, Workspace
from runyard.errors import NotFound

pytestmark = pytest.mark.postgres

SCRIPT = """
import hashlib, os
from runyard import Run

run = Run.get_context()
for i in range(100):
    run.log("acc", i / 100, step=i)
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.txt", "w") as fh:
    fh.write("weights")
mine = hashlib.sha256(os.environ["RUNYARD_TOKEN"].encode()).hexdigest()
print("token is the user's:", mine == open("user_sha.txt").read().strip())
"""


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runyard.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_serve_postgres_two_workers_end_to_end(pg_uri, tmp_path, monkeypatch):
    server = ServeProcess(pg_uri, free_port(), "--workers", "2",
                          "--artifacts", str(tmp_path / "artifacts"))  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        server.start()
        assert f"at {server.url} (2 worker(s))" in server.text
        token = server.token()
        assert token and token.startswith("ry_")
        monkeypatch.setenv("RUNYARD_TOKEN", token)
        monkeypatch.setenv("RUNYARD_SPOOL_DIR", str(tmp_path / "spool"))
        for name in ("RUNYARD_URI", "RUNYARD_RUN_ID"):
            monkeypatch.delenv(name, raising=False)

        # -- the SDK --------------------------------------------------------------------
        ws = Workspace(server.url)
        exp = Experiment(ws, "e2e")
        run = exp.start_logging(snapshot_directory=None, outputs=False)
        for i in range(1000):
            run.log("loss", 1 / (i + 1), step=i)
        run.log_list("sizes", [1, 2, 3])
        run.set_tags({"team": "vision"})
        run.add_properties({"seed": "7"})
        (work / "notes.txt").write_text("hello server")
        run.upload_file("files/notes.txt", str(work / "notes.txt"))
        children = run.create_children(3)
        for child in children:
            child.log("part", 1.0)
            child.complete()
        run.complete()
        other = exp.start_logging(snapshot_directory=None, outputs=False, tags={"team": "nlp"})
        other.complete()

        again = Workspace(server.url).get_run(run.id)  # another client, either worker
        assert again.get_status() == "Completed"
        metrics = again.get_metrics()
        assert metrics["loss"] == [1 / (i + 1) for i in range(1000)]
        assert metrics["sizes"] == [1, 2, 3]
        assert again.get_tags()["team"] == "vision" and again.get_properties()["seed"] == "7"
        again.download_file("files/notes.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "hello server"
        assert sorted(c.id for c in again.get_children()) == sorted(c.id for c in children)
        found = list(exp.get_runs(tags={"team": "vision"}, properties={"seed": "7"}))
        assert [r.id for r in found] == [run.id]
        with pytest.raises(NotFound):
            ws.get_run("no-such-run")

        # -- a submitted script run: runs here, reports to the server ----------------------
        source = tmp_path / "src"
        source.mkdir()
        (source / "train.py").write_text(SCRIPT)
        (source / "user_sha.txt").write_text(hashlib.sha256(token.encode()).hexdigest())
        script_run = exp.submit(ScriptRunConfig(str(source), "train.py"))
        script_run.wait_for_completion(wait_post_processing=True, raise_on_error=False)
        assert script_run.get_status() == "Completed", script_run.get_details()
        assert script_run.get_metrics()["acc"] == [i / 100 for i in range(100)]
        files = script_run.get_file_names()
        assert "outputs/model.txt" in files and "user_logs/std_log.txt" in files
        script_run.download_file("user_logs/std_log.txt", str(tmp_path / "std_log.txt"))
        log = (tmp_path / "std_log.txt").read_text()
        assert "token is the user's: False" in log, log
        assert token not in log

        # -- the CLI, with RUNYARD_TOKEN, then with the token kept by runyard login -----------
        env = clean_env(RUNYARD_TOKEN=token, XDG_CONFIG_HOME=str(tmp_path / "config"))
        listed = cli("run", "list", "-e", "e2e", "--workspace", server.url, env=env, cwd=work)
        assert listed.returncode == 0, listed.stderr
        assert {run.id, other.id, script_run.id} <= {r["run_id"] for r in json.loads(listed.stdout)}
        shown = cli("run", "show", "-r", run.id, "--workspace", server.url, env=env, cwd=work)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["run_id"] == run.id
        followed = cli("run", "monitor-logs", "-r", script_run.id, "--workspace", server.url,
                       env=env, cwd=work)  # fmt: skip
        assert followed.returncode == 0, followed.stderr
        assert "token is the user's: False" in followed.stdout + followed.stderr

        env.pop("RUNYARD_TOKEN")
        login = cli("login", server.url, "--token", token, env=env, cwd=work)
        assert login.returncode == 0, login.stderr
        kept = tmp_path / "config" / "runyard" / "credentials.json"
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        shown = cli("run", "show", "-r", run.id, "--workspace", server.url, env=env, cwd=work)
        assert shown.returncode == 0, shown.stderr

        # -- SIGTERM while a request is in flight: it finishes, then the server exits 0 -------
        answer: list[httpx.Response] = []

        def slow_body():
            for _ in range(6):
                yield b"x" * 1000
                time.sleep(0.25)

        def upload() -> None:
            answer.append(
                httpx.put(
                    f"{server.url}/api/v1/runs/{run.id}/files/files/slow.bin",
                    content=slow_body(),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
            )

        uploading = threading.Thread(target=upload)
        uploading.start()
        time.sleep(0.6)
        assert server.stop() == 0, server.text
        uploading.join(30)
        assert answer and answer[0].status_code < 300, answer and answer[0].text

        server.start()
        assert server.token() is None  # the admin token is shown on the first start only
        stored = Workspace(server.url).get_run(run.id)
        assert stored.get_file_names().count("files/slow.bin") == 1
    finally:
        server.kill()
