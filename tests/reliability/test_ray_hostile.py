"""Attacks on runs sent to a Ray cluster, each of which found a defect: ranks outliving a
killed supervisor, daemons outliving a cancel, logs lost to Ray's own stop, a submit that
waited for ever, a canceled run ended Failed, and a server made to request any URL."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import threading
import time
import uuid

import httpx
import psutil
import pytest
from tests.compute.test_ray_runs import processes_with
from tests.execution.conftest import wait_until
from tests.ray_fixtures import TARGET

from runyard import Experiment, ScriptRunConfig, Workspace
from runyard.errors import ExperimentExecutionError, UserError
from runyard.execution import PyTorchConfiguration
from runyard.records import NewRun

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster: one test worker

TWO = PyTorchConfiguration(process_count=2)


def _kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass


def _ray_supervisor_of(run_id: str) -> psutil.Process:
    (found,) = [
        p for p in processes_with("runyard.execution.ray_supervisor") if run_id in p.cmdline()
    ]
    return found


def test_a_killed_supervisor_of_a_distributed_run_leaves_no_rank_running(pg_cluster):
    # The driver (ray_supervisor) is SIGKILLed (OOM killer): Ray kills the run's actors,
    # and with them (SIGKILL, Ray's kill_child_processes_on_worker_exit) each rank's keeper
    # before it can stop its tree: the scripts are orphaned to init and run on, still
    # writing into a run that readers already show Failed.
    marker = f"rank-orphan-{uuid.uuid4().hex[:8]}"
    pg_cluster.script("train.py", "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    config = ScriptRunConfig(
        str(pg_cluster.root), "train.py", arguments=[marker], compute_target=TARGET,
        distributed_job_config=TWO,
    )  # fmt: skip
    run = pg_cluster.exp.submit(config)
    try:
        wait_until(lambda: "up" in pg_cluster.read(run, "user_logs/std_log_process_1.txt"), 60)
        assert len(processes_with(marker)) >= 2
        os.kill(_ray_supervisor_of(run.id).pid, signal.SIGKILL)
        wait_until(lambda: run.get_status() == "Failed", timeout=30, every=0.3)
        time.sleep(5)  # the keepers have their grace (1 s) and more
        left = processes_with(marker)
        assert not left, f"ranks still running after the run Failed: {[p.pid for p in left]}"
    finally:
        _kill_all(processes_with(marker))


def test_cancel_of_a_distributed_run_stops_a_double_forked_daemon(pg_cluster):
    # A rank starts a daemon that double-forks, setsid()s and ignores SIGTERM. Locally the
    # supervisor is a subreaper, so the orphan stays in its tree and is SIGKILLed; the
    # actor hosting a rank (ProcessHost) is no subreaper: the actor's stop_all SIGKILLs
    # the keeper during its grace, the daemon goes to init and survives the cancel.
    marker = f"daemon-{uuid.uuid4().hex[:8]}"
    pg_cluster.script("spawn.py", f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
        os.execv(sys.executable, [sys.executable, "-c", code, "{marker}"])
    os._exit(0)
print("up", flush=True)
time.sleep(120)
""")  # fmt: skip
    config = ScriptRunConfig(
        str(pg_cluster.root), "spawn.py", compute_target=TARGET, distributed_job_config=TWO
    )
    run = pg_cluster.exp.submit(config)
    try:
        wait_until(lambda: "up" in pg_cluster.read(run, "user_logs/std_log_process_1.txt"), 60)
        wait_until(lambda: len(processes_with(marker)) == 2, timeout=10)
        run.cancel()
        wait_until(lambda: run.get_status() == "Canceled", timeout=20, every=0.3)
        time.sleep(4)
        left = processes_with(marker)
        assert not left, f"daemons of a canceled run still run: {[p.pid for p in left]}"
    finally:
        _kill_all(processes_with(marker))


SIGTERM_WRITER = """
import os, signal, sys, time
os.makedirs("logs", exist_ok=True)
def term(*_):
    open("logs/term.txt", "w").write("checkpointed")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("up", flush=True)
while True:
    time.sleep(0.1)
"""


def test_cancel_keeps_what_the_script_writes_to_logs_when_told_to_stop(pg_cluster):
    # Locally, a script that writes ./logs/term.txt in its SIGTERM handler has that file
    # uploaded and the supervisor marks the run Canceled itself ("canceled" in its log).
    # On Ray, Run.cancel() also asks Ray to stop the job: Ray SIGTERMs the driver and all
    # its descendants, the supervisor's SIGTERM handler raises inside its own cancel
    # handling (stopped -> wind_down), ./logs is never synced, and Canceled is left to a
    # reader that asks Ray.
    pg_cluster.script("term.py", SIGTERM_WRITER)
    run = pg_cluster.exp.submit(
        ScriptRunConfig(str(pg_cluster.root), "term.py", compute_target=TARGET)
    )
    wait_until(lambda: "up" in pg_cluster.read(run, "user_logs/std_log.txt"), 60)
    time.sleep(0.5)
    run.cancel()
    wait_until(lambda: run.get_status() == "Canceled", timeout=20, every=0.3)
    time.sleep(1)
    supervisor_log = pg_cluster.read(run, "system_logs/supervisor.txt")
    assert "logs/term.txt" in run.get_file_names(), (run.get_file_names(), supervisor_log)
    assert "canceled" in supervisor_log, supervisor_log


def test_cancel_of_a_distributed_run_is_not_a_supervisor_failure(pg_cluster):
    # Ray's stop of the job makes ray.wait() in the driver raise SystemExit: the supervisor
    # logs "runyard's supervisor failed: SystemExit: 1" with a traceback for a plain
    # cancel, and the ranks' ./logs written on SIGTERM are not uploaded.
    pg_cluster.script("term.py", SIGTERM_WRITER)
    config = ScriptRunConfig(
        str(pg_cluster.root), "term.py", compute_target=TARGET, distributed_job_config=TWO
    )
    run = pg_cluster.exp.submit(config)
    wait_until(lambda: "up" in pg_cluster.read(run, "user_logs/std_log_process_1.txt"), 60)
    time.sleep(0.5)
    run.cancel()
    wait_until(lambda: run.get_status() == "Canceled", timeout=20, every=0.3)
    time.sleep(1)
    supervisor_log = pg_cluster.read(run, "system_logs/supervisor.txt")
    assert "supervisor failed" not in supervisor_log, supervisor_log[-2000:]
    assert "logs/term.txt" in run.get_file_names(), run.get_file_names()


class _SilentDashboard:
    """A 'dashboard' that tells its version and then never answers (a hung dashboard, a
    proxy that accepts and drops): Ray's client waits for ever on it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.conns: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        try:
            request = conn.recv(65536)
            if request.startswith(b"GET /api/version"):
                body = json.dumps({"version": "4", "ray_version": "2.60.0"}).encode()
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(body)}\r\n\r\n"
                conn.sendall(head.encode() + body)
                _SilentDashboard._serve(conn)  # keep-alive: the next request hangs
        except OSError:
            pass

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


def _submit_in_thread(exp, config) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def go() -> None:
        try:
            result["run"] = exp.submit(config)
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, result


def test_submit_to_a_dashboard_that_never_answers_gives_up(pg_cluster, monkeypatch):
    # ray.job_submission.JobSubmissionClient uses requests without a timeout: submit()
    # waited for ever (the run stayed NotStarted, kept alive by the submitter's heartbeat).
    monkeypatch.setenv("RUNYARD_RAY_SUBMIT_SECONDS", "5")
    silent = _SilentDashboard()
    pg_cluster.ws._store.attach_compute("silent-ray", "ray", silent.url)  # moved since attach
    pg_cluster.script("a.py", "print('hi')\n")
    config = ScriptRunConfig(str(pg_cluster.root), "a.py", compute_target="silent-ray")
    thread, result = _submit_in_thread(pg_cluster.exp, config)
    try:
        thread.join(25)
        assert not thread.is_alive(), "submit() still waits for the cluster after 25 s"
        assert isinstance(result.get("error"), ExperimentExecutionError)
        assert "RUNYARD_RAY_SUBMIT_SECONDS" in str(result["error"])
        (run,) = pg_cluster.exp.get_runs()
        assert run.get_status() == "Failed"
    finally:
        silent.close()
        thread.join(15)


def test_a_cluster_that_does_not_answer_at_all_gets_no_run(pg_cluster):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    address = f"http://127.0.0.1:{dead.getsockname()[1]}"
    pg_cluster.ws._store.attach_compute("gone-ray", "ray", address)
    pg_cluster.script("a.py", "print('hi')\n")
    config = ScriptRunConfig(str(pg_cluster.root), "a.py", compute_target="gone-ray")
    with pytest.raises(UserError, match="no Ray cluster answers at"):
        pg_cluster.exp.submit(config)
    assert list(pg_cluster.exp.get_runs()) == []
    dead.close()


def test_a_run_canceled_while_its_submission_fails_ends_canceled(pg_cluster):
    # The user cancels a run while submit() is still handing it to Ray (CancelRequested);
    # the submission then fails, and ray_target.submit sets Failed without only_from: the
    # canceled run ends Failed (RayJobNotSubmitted) instead of Canceled.
    silent = _SilentDashboard()
    pg_cluster.ws._store.attach_compute("silent-ray", "ray", silent.url)
    pg_cluster.script("a.py", "print('hi')\n")
    config = ScriptRunConfig(str(pg_cluster.root), "a.py", compute_target="silent-ray")
    thread, result = _submit_in_thread(pg_cluster.exp, config)
    try:
        runs = wait_until(lambda: list(pg_cluster.exp.get_runs()), timeout=10)
        time.sleep(1)
        other = Workspace(pg_cluster.ws.uri, artifacts=pg_cluster.ws.artifacts_root)
        (run,) = list(Experiment(other, pg_cluster.exp.name).get_runs())
        assert run.id == runs[0].id
        run.cancel()
        assert run.get_status() == "CancelRequested"
    finally:
        silent.close()  # the submission fails now
        thread.join(15)
    assert "error" in result
    assert run.get_status() == "Canceled", run.get_details().get("error")
    other._store.close()


class _Internal(http.server.BaseHTTPRequestHandler):
    """An internal service only the server's network reaches (cloud metadata, admin UI)."""

    hits: list[tuple[str, str]] = []

    def _answer(self) -> None:
        _Internal.hits.append((self.command, self.path))
        body = json.dumps(
            {"submission_id": "x", "status": "FAILED", "message": "INTERNAL-SECRET-42",
             "stopped": True}
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def test_a_contributor_cannot_make_the_server_request_any_url(tmp_path, monkeypatch):
    # A run's supervisor name ("ray|<id>|<address>", set through POST /heartbeat by any
    # contributor or run token) and its runyard.rayJob property are not checked against
    # the attached compute targets (only an admin may attach one): the server then GETs
    # (liveness, for any reader's GET /runs/{id}) and POSTs (cancel) any URL, and puts the
    # answer's "message" into the run's error, which every reader sees.
    from tests.conftest import pg_schema_uri
    from tests.live_server import serve_workspace

    internal = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Internal)
    threading.Thread(target=internal.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{internal.server_address[1]}/latest/meta-data#"
    _Internal.hits = []
    try:
        for uri in pg_schema_uri():
            with serve_workspace(uri, str(tmp_path / "artifacts"), auth=True) as (url, store):
                _, contributor = store.create_token("mallory", "contributor")
                _, reader = store.create_token("rita", "reader")
                monkeypatch.setenv("RUNYARD_TOKEN", contributor)
                ws = Workspace(url)
                exp = Experiment(ws, "x")
                ws._store.create_runs(
                    exp.id,
                    [NewRun(id="evil-1", type="azureml.scriptrun", status="NotStarted",
                            heartbeat=True,
                            properties={"runyard.rayJob": f"ray|y|{target}"})],
                )  # fmt: skip
                ws._store.heartbeat("evil-1", supervisor=f"ray|runyard-{'0' * 32}|{target}")
                time.sleep(5.5)  # late by the server's rule (2.5 heartbeats of 2 s)
                answer = httpx.get(
                    f"{url}/api/v1/runs/evil-1", headers={"Authorization": f"Bearer {reader}"}
                )
                canceled = httpx.post(
                    f"{url}/api/v1/runs/evil-1/cancel",
                    headers={"Authorization": f"Bearer {contributor}"},
                )
                assert canceled.status_code == 200, canceled.text
                ws._store.close()
                error = json.dumps(answer.json().get("error"))
                assert _Internal.hits == [], f"the server requested {_Internal.hits}"
                assert "INTERNAL-SECRET-42" not in error, error
    finally:
        internal.shutdown()
