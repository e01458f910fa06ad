"""Faults between a client and a runyard server that the client survives.

The server is a real ``runyard serve`` subprocess (SIGKILLed, stopped and started again on
the same port), or one in a thread behind a small HTTP proxy that answers 502/503, resets
connections or stalls. The clients are real processes logging through the SDK. What is
checked is what the server finally stores: every point exactly once, in order.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.live_server import serve_workspace

from runyard.errors import Conflict, NotFound, ServerUnreachable
from runyard.store import open_store
from runyard.store.rest import RestStore

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class ServeProcess:
    """``runyard serve`` in a subprocess (its own process group) on a fixed port."""

    def __init__(self, workspace: str, port: int, *args: str, env: dict[str, str] | None = None):
        self.workspace = workspace
        self.port = port
        self.args = args
        self.env = env or clean_env()
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 30.0) -> ServeProcess:
        cmd = [sys.executable, "-m", "runyard.cli", "serve", "--workspace", self.workspace,
               "--port", str(self.port), *self.args]  # fmt: skip
        self.output = []
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        proc = self.proc
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                time.sleep(0.1)
                raise RuntimeError(f"runyard serve exited {proc.returncode}: {self.text}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"runyard serve did not start: {self.text}")
            time.sleep(0.05)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def token(self) -> str | None:
        """The admin token this start printed, if it printed one."""
        lines = self.text.splitlines()
        for i, line in enumerate(lines):
            if "admin token was created" in line:
                return lines[i + 1].strip()
        return None

    def kill(self) -> None:
        """SIGKILL the whole process group (workers too), and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


# -- 1. the server is SIGKILLed and restarted while 4 processes log ----------------------

LOGGER = """
import os, sys, time
from runyard import Experiment, Workspace

ws = Workspace(os.environ["URL"])
run = Experiment(ws, "faults").start_logging(snapshot_directory=None, outputs=False)
print(run.id, flush=True)
n, slices = int(os.environ["POINTS"]), 40
per = n // slices
for s in range(slices):
    for i in range(s * per, (s + 1) * per):
        run.log("loss", i * 0.5, step=i)
    run.log_list("chunk", [float(s), float(s) + 0.25])
    if s == slices // 2:
        run.flush()  # a flush while the server may be down: spooled, never raised
    print("slice", s, flush=True)
    time.sleep(float(os.environ["PAUSE"]))
run.complete()
print("done", flush=True)
"""


def check_series(store, run_id: str, points: int, slices: int = 40) -> None:
    loss = store.get_history(run_id, "loss")
    assert list(loss.steps) == list(range(points)), "lost, repeated or reordered points"
    assert list(loss.values) == [i * 0.5 for i in range(points)]
    chunk = store.get_history(run_id, "chunk")
    expected = [v for s in range(slices) for v in (float(s), float(s) + 0.25)]
    assert list(chunk.values) == expected


def test_server_killed_and_restarted_while_four_processes_log(tmp_path):
    ws_dir = str(tmp_path / "ws")
    port = free_port()
    server = ServeProcess(ws_dir, port)
    clients: list[subprocess.Popen[str]] = []
    points = 200_000
    try:
        server.start()
        token = server.token()
        assert token and token.startswith("ry_"), server.text
        env = clean_env(
            URL=server.url,
            RUNYARD_TOKEN=token,
            RUNYARD_SPOOL_DIR=str(tmp_path / "spool"),
            POINTS=str(points),
            PAUSE="0.08",
        )
        for _ in range(4):
            clients.append(
                subprocess.Popen(
                    [sys.executable, "-c", LOGGER],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        # every client is logging, a third of the way in: batches are on the wire
        progress = [[] for _ in clients]
        for client, seen in zip(clients, progress, strict=True):
            assert client.stdout is not None
            while len(seen) < 12:
                line = client.stdout.readline()
                assert line, f"a client ended early: {client.wait()} {client.stderr.read()}"
                seen.append(line.strip())
        server.kill()
        time.sleep(1.5)
        server.start()
        assert server.token() is None  # a second start prints no token
        run_ids = []
        for client, seen in zip(clients, progress, strict=True):
            out, err = client.communicate(timeout=120)
            assert client.returncode == 0, err
            assert err.strip() == "", err  # nothing raised, nothing lost said on stderr
            lines = seen + out.splitlines()
            assert lines[-1] == "done"
            run_ids.append(lines[0])
        server.stop()
        store = open_store(ws_dir)
        try:
            for run_id in run_ids:
                assert store.get_run(run_id).status == "Completed"
                check_series(store, run_id, points)
        finally:
            store.close()
        assert not list((tmp_path / "spool").rglob("*.spool"))  # all delivered
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
        server.kill()


# -- 2. the server is down when training starts, or stays down: memory, spool, sync ---------

TRAINER = """
import os, sys, time
from runyard import Run

def wait_for(name):
    while not os.path.exists(name):
        time.sleep(0.02)

run = Run.get_context()  # the server is down: waits for it, within the retry budget
print("ready", flush=True)
wait_for("server-down")
n = int(os.environ["POINTS"])
worst = 0.0
for i in range(n):
    t = time.perf_counter()
    run.log("loss", i * 0.5, step=i)
    if i % 1000 == 0:
        run.log_list("chunk", [float(i), float(i) + 0.25])
    if time.perf_counter() - t > worst:
        worst, at = time.perf_counter() - t, i
    if i % 20000 == 0:
        time.sleep(0.3)  # the background flusher hands batches to the outbox meanwhile
run.flush()  # durable: in the spool, as the server is still down
store = run._store
outbox = store._outbox
print("logged", worst, at, outbox.pending(), bool(outbox.spool_path), outbox.memory_bytes,
      flush=True)
if os.environ.get("WAIT_FOR_SERVER"):
    wait_for("server-up")
    deadline = time.monotonic() + 60
    while outbox.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("delivered", outbox.pending(), outbox.spool_path, flush=True)
"""


def read_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert proc.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the process said nothing more: {err}")
    return box[0].strip()


def start_trainer(tmp_path: Path, server: ServeProcess, run_id: str, token: str, points: int,
                  **extra: str) -> subprocess.Popen[str]:  # fmt: skip
    env = clean_env(
        RUNYARD_URI=server.url,
        RUNYARD_RUN_ID=run_id,
        RUNYARD_TOKEN=token,
        RUNYARD_SPOOL_DIR=str(tmp_path / "spool"),
        RUNYARD_SPOOL_MEMORY_MB="0.25",
        RUNYARD_HTTP_RETRY_SECONDS="30",
        POINTS=str(points),
        **extra,
    )
    return subprocess.Popen([sys.executable, "-c", TRAINER], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def submitted_run(server: ServeProcess, token: str) -> str:
    """A run created while the server is up, as ``submit`` creates it."""
    store = RestStore(server.url, token=token)
    try:
        experiment = store.get_or_create_experiment("faults")
        from runyard.records import NewRun

        run_id = f"run-{time.monotonic_ns()}"
        store.create_runs(experiment.id, [NewRun(id=run_id)])
        return run_id
    finally:
        store.close()


def check_trainer_series(ws_dir: str, run_id: str, points: int) -> None:
    """The trainer's series, read from the workspace itself: every point once, in order."""
    store = open_store(ws_dir)
    try:
        loss = store.get_history(run_id, "loss")
        assert list(loss.steps) == list(range(points))
        assert list(loss.values) == [i * 0.5 for i in range(points)]
        chunk = store.get_history(run_id, "chunk")
        assert list(chunk.values) == [v for i in range(0, points, 1000) for v in (i, i + 0.25)]
    finally:
        store.close()


def test_training_starts_while_the_server_is_down_and_catches_up(tmp_path):
    ws_dir = str(tmp_path / "ws")
    server = ServeProcess(ws_dir, free_port())
    points = 100_000
    trainer = None
    try:
        server.start()
        token = server.token()
        assert token
        run_id = submitted_run(server, token)
        assert server.stop() == 0
        trainer = start_trainer(tmp_path, server, run_id, token, points, WAIT_FOR_SERVER="1")
        time.sleep(1.5)  # Run.get_context() waits for the server meanwhile
        assert trainer.poll() is None
        server.start()
        assert read_line(trainer) == "ready"
        server.kill()  # and it stays down while the script logs
        (tmp_path / "server-down").touch()
        said = read_line(trainer).split()
        assert said[0] == "logged", said
        worst, pending, spooled, in_memory = float(said[1]), int(said[3]), said[4], int(said[5])
        assert worst < 0.25, f"run.log blocked for {worst:.3f} s at {said[2]}"
        assert pending > 0 and spooled == "True" and in_memory <= 0.25 * 2**20
        assert list((tmp_path / "spool").rglob("*.spool"))
        server.start()
        (tmp_path / "server-up").touch()
        assert read_line(trainer).split() == ["delivered", "0", "None"]
        _, err = trainer.communicate(timeout=60)
        assert trainer.returncode == 0, err
        assert err.strip() == "", err
        assert not list((tmp_path / "spool").rglob("*.spool"))
        server.stop()
        check_trainer_series(ws_dir, run_id, points)
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        server.kill()


def test_process_ends_while_the_server_is_down_then_runyard_sync(tmp_path):
    ws_dir = str(tmp_path / "ws")
    server = ServeProcess(ws_dir, free_port())
    points = 60_000
    trainer = None
    try:
        server.start()
        token = server.token()
        assert token
        run_id = submitted_run(server, token)
        trainer = start_trainer(tmp_path, server, run_id, token, points)
        assert read_line(trainer) == "ready"
        server.kill()
        (tmp_path / "server-down").touch()
        assert read_line(trainer).startswith("logged")
        _, err = trainer.communicate(timeout=60)
        assert trainer.returncode == 0, err
        assert "`runyard sync` sends them" in err  # said once, at exit
        assert list((tmp_path / "spool").rglob("*.spool"))

        server.start()
        env = clean_env(RUNYARD_TOKEN=token, RUNYARD_SPOOL_DIR=str(tmp_path / "spool"))
        sync = [sys.executable, "-m", "runyard.cli", "sync", "--workspace", server.url]
        done = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        first = json.loads(done.stdout)
        assert first["files"] >= 1 and first["batches"] >= 1
        assert not list((tmp_path / "spool").rglob("*.spool"))
        done = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["batches"] == 0  # nothing sent twice
        server.stop()
        check_trainer_series(ws_dir, run_id, points)
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        server.kill()


# -- 3. 502/503, resets and stalls are retried (bounded); a 4xx never is ---------------------


class FaultyProxy:
    """An HTTP proxy on 127.0.0.1 in front of a live server. ``faults`` is consumed one per
    request: "502"/"503" answer that status, "reset" closes the connection abruptly before
    answering, "lost" passes the request on and then resets instead of answering, "stall"
    never answers; once empty (or with ``always`` set) requests pass, or get ``always``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[str] = []
        self.always: str | None = None
        self.seen: list[tuple[float, str, str]] = []  # (time, method, path) of each request
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._upstream = httpx.Client(base_url=upstream, timeout=30)
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, path_part: str) -> int:
        return sum(1 for _, _, path in self.seen if path_part in path)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while True:
                request = reader.readline()
                if not request:
                    return
                method, target, _ = request.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length", 0)))
                self.seen.append((time.monotonic(), method, target))
                fault = self.faults.pop(0) if self.faults else self.always
                if fault in ("502", "503"):
                    text = b"upstream trouble"
                    conn.sendall(
                        f"HTTP/1.1 {fault} Bad\r\nContent-Length: {len(text)}\r\n"
                        "Connection: close\r\n\r\n".encode()
                        + text
                    )
                    return
                if fault == "stall":
                    time.sleep(5)
                    return
                if fault in ("reset", "lost"):
                    if fault == "lost":
                        self._forward(method, target, headers, body)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    return  # closed with a RST
                answer = self._forward(method, target, headers, body)
                head = f"HTTP/1.1 {answer.status_code} X\r\n"
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                            "content-encoding"):  # fmt: skip
                        head += f"{name}: {value}\r\n"
                head += f"Content-Length: {len(answer.content)}\r\n\r\n"
                conn.sendall(head.encode() + answer.content)

    def _forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        keep = {k: v for k, v in headers.items() if k not in ("host", "content-length")}
        return self._upstream.request(method, target, headers=keep, content=body)

    def close(self) -> None:
        self.listener.close()
        self._upstream.close()


@pytest.fixture
def proxied(tmp_path, monkeypatch) -> Iterator[tuple[FaultyProxy, RestStore, Any]]:
    """(proxy, a RestStore through it, the server's own store)."""
    monkeypatch.setenv("RUNYARD_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("RUNYARD_HTTP_RETRY_SECONDS", "3")
    monkeypatch.setenv("RUNYARD_HTTP_TIMEOUT_SECONDS", "0.5")
    with serve_workspace(str(tmp_path / "served")) as (url, server_store):
        proxy = FaultyProxy(url)
        store = RestStore(proxy.url, token=None)
        try:
            yield proxy, store, server_store
        finally:
            store.close()
            proxy.close()


def test_502_503_resets_and_stalls_are_retried_then_succeed(proxied):
    proxy, store, server_store = proxied
    proxy.faults = ["503", "502", "reset", "stall"]
    started = time.monotonic()
    experiment = store.get_or_create_experiment("retried")
    assert time.monotonic() - started < 3
    assert proxy.count("/experiments") == 5  # four faults, then the one that passed
    assert server_store.find_experiment("retried") == experiment  # created once

    # the answer to a metric batch is lost after the server stored it: sent again with the
    # same idempotency key, stored once
    from runyard.records import NewRun, SeriesAppend

    store.create_runs(experiment.id, [NewRun(id="r1")])
    proxy.faults = ["lost", "lost"]
    batch = [SeriesAppend("loss", "scalar", [0, 1, 2], [0.5, 0.25, 0.125], [1.0, 2.0, 3.0], "")]
    store.log_batch("r1", batch)
    assert store.flush(10)
    assert proxy.count("/runs/r1/metrics") == 3
    history = server_store.get_history("r1", "loss")
    assert list(history.steps) == [0, 1, 2] and list(history.values) == [0.5, 0.25, 0.125]


def test_retries_are_bounded_and_spaced_then_server_unreachable(proxied):
    proxy, store, _ = proxied
    proxy.always = "503"
    started = time.monotonic()
    with pytest.raises(ServerUnreachable) as caught:
        store.find_experiment("nothing")
    elapsed = time.monotonic() - started
    assert elapsed < 3 + 0.5 + 0.5  # the budget, one attempt's timeout, some slack
    attempts = [t for t, _, path in proxy.seen if "/experiments" in path]
    assert len(attempts) >= 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(set(round(g, 3) for g in gaps)) > 1  # backoff with jitter, not a fixed beat
    message = str(caught.value)
    assert proxy.url in message and "HTTP 503" in message
    assert f"{len(attempts)} attempt(s)" in message and "RUNYARD_HTTP_RETRY_SECONDS" in message

    proxy.always = "stall"  # timeouts: bounded the same way
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match="ReadTimeout"):
        store.list_experiments()
    assert time.monotonic() - started < 3 + 0.5 + 0.5


def test_a_4xx_is_asked_once_and_raises_as_locally(proxied, tmp_path):
    proxy, store, _ = proxied
    local = open_store(str(tmp_path / "local"))
    try:
        for target in (store, local):
            experiment = target.get_or_create_experiment("same")
            from runyard.records import NewRun

            target.create_runs(experiment.id, [NewRun(id="r1")])
            target.add_properties("r1", {"seed": "1"})
        before = len(proxy.seen)
        errors = []
        for target in (store, local):
            with pytest.raises(NotFound) as missing:
                target.get_run("no-such-run")
            with pytest.raises(Conflict) as changed:
                target.add_properties("r1", {"seed": "2"})
            errors.append((type(missing.value), str(missing.value)))
            errors.append((type(changed.value), str(changed.value)))
        # same classes, same messages (each names its workspace; a server never its path)
        assert not any(str(tmp_path) in m for _, m in errors[:2])
        served = [(cls, m.replace("this server's workspace", "WS")) for cls, m in errors[:2]]
        assert served == [(cls, m.replace(str(tmp_path / "local"), "WS")) for cls, m in errors[2:]]
        assert len(proxy.seen) - before == 2  # each asked exactly once
    finally:
        local.close()


def test_a_training_script_whose_server_never_answers_gets_a_clear_error(tmp_path):
    script = "from runyard import Run\nRun.get_context()\n"
    env = clean_env(
        RUNYARD_URI=f"http://127.0.0.1:{free_port()}",
        RUNYARD_RUN_ID="r1",
        RUNYARD_TOKEN="ry_x",
        RUNYARD_HTTP_RETRY_SECONDS="1",
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "ServerUnreachable" in done.stderr and "did not answer GET" in done.stderr
    assert "RUNYARD_HTTP_RETRY_SECONDS" in done.stderr
