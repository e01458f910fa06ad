"""A real local Ray cluster for the tests and benchmarks: ``ray start --head`` on this
machine with 2 CPUs, its own ports and temporary folder, stopped with its processes.

Its dashboard (the Jobs API) listens on 127.0.0.1. Ray itself gives a node the machine's
routable address even when asked for 127.0.0.1 (``services.resolve_ip_for_localhost``),
so its own gRPC servers, and torch.distributed's rendezvous between the processes of a
distributed run, use that address: that is the engine's choice, not ours.

Without Ray the tests skip with a visible reason, unless RUNYARD_REQUIRE_RAY=1 (CI sets
it) makes that a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

REQUIRE = os.environ.get("RUNYARD_REQUIRE_RAY") == "1"


def _missing(why: str) -> None:
    import pytest

    if REQUIRE:
        pytest.fail(f"Ray is required here (RUNYARD_REQUIRE_RAY=1): {why}")
    pytest.skip(why)


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


@contextlib.contextmanager
def ray_cluster(cpus: int = 2) -> Iterator[str]:
    """Start a head node; yield its dashboard URL (the Jobs API)."""
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    if not os.path.exists(ray_cli):
        raise RuntimeError("Ray is not installed: pip install 'runyard[ray]'")
    temp = tempfile.mkdtemp(prefix="ry-ray-", dir="/tmp")  # Ray's socket paths must be short
    gcs, dashboard, client, agent_http, agent_grpc, metrics, node, objects, env_agent = _free_ports(
        9
    )
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    # the jobs' `python` is this interpreter, with runyard installed, as on a real cluster
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.pop("RAY_ADDRESS", None)
    command = [
        ray_cli, "start", "--head", "--block", "--disable-usage-stats",
        f"--num-cpus={cpus}", "--num-gpus=0",
        "--dashboard-host=127.0.0.1",
        f"--port={gcs}", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--node-manager-port={node}",
        f"--object-manager-port={objects}", f"--runtime-env-agent-port={env_agent}",
        f"--temp-dir={temp}",
    ]  # fmt: skip
    log = open(os.path.join(temp, "ray-start.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_ready(url, proc, temp)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)  # --block: Ctrl-C stops the cluster
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _kill_leftovers(temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], temp: str) -> None:
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(os.path.join(temp, "ray-start.log"), "rb") as fh:
                tail = fh.read()[-3000:].decode("utf-8", "replace")
            raise RuntimeError(f"ray start ended with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/api/jobs/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Ray cluster did not answer at {url} within 90 s")


def _kill_leftovers(temp: str) -> None:
    """Ray's processes started for this cluster that outlived ``ray start --block``."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if temp in cmdline:
            with contextlib.suppress(psutil.Error):
                proc.kill()
