"""What a reader asks a Ray cluster about a run sent there: is its job alive, stop it.

A run on a Ray compute target names its supervisor ``ray|<submission id>|<dashboard URL>``
(see ``execution.ray_target``). Its heartbeat stops while Ray keeps it waiting for room, so
the liveness rule asks Ray instead, through the Jobs API's REST routes (httpx, no Ray
import): a job that is pending or running is alive; a job that ended, or that Ray never
heard of, is not, and Ray's own message says why.

Whoever may write a run writes its supervisor name and properties, so neither is trusted:
a cluster is asked only at the address of a compute target attached to the workspace (an
admin's doing), about a submission id of runyard's own form, and a job is stopped only if
Ray says it was submitted for that very run.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Collection
from typing import Any

PREFIX = "ray|"
PROPERTY = "runyard.rayJob"  # the run property holding its supervisor name
ALIVE = ("PENDING", "RUNNING")
_TIMEOUT = 3.0
_REMEMBER = 2.0  # seconds a verdict is reused: every listing asks for every late run
_SILENT_CLUSTER = 30.0  # seconds a cluster that did not answer is not asked again
_verdicts: dict[str, tuple[float, bool | None, str]] = {}
_silent: dict[str, tuple[float, str]] = {}  # dashboard URL -> (when, what failed)
_lock = threading.Lock()
_SUBMISSION_ID = re.compile(r"^runyard-[0-9a-f]{32}$")
MAX_MESSAGE = 2000  # Ray's message of a failed job may end in 20,000 characters of its log


def supervisor_name(address: str, submission_id: str) -> str:
    return f"{PREFIX}{submission_id}|{address}"


def parse(name: str | None) -> tuple[str, str] | None:
    """(dashboard URL, submission id) of a Ray supervisor name; None for other names."""
    if not name or not name.startswith(PREFIX):
        return None
    submission_id, _, address = name[len(PREFIX) :].partition("|")
    if not _SUBMISSION_ID.match(submission_id) or not address:
        return None
    return address, submission_id


def attached(store: Any) -> frozenset[str]:
    """The dashboard URLs of the compute targets attached to ``store``'s workspace."""
    return frozenset(c.address for c in store.list_computes() if c.type == "ray")


def job_info(address: str, submission_id: str) -> dict[str, Any] | None:
    """The job's details from the cluster; None if the cluster has no such job.

    Raises ``httpx.HTTPError`` when the cluster does not answer.
    """
    import httpx

    response = httpx.get(f"{address}/api/jobs/{submission_id}", timeout=_TIMEOUT)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def verdict(name: str, addresses: Collection[str]) -> tuple[bool | None, str]:
    """(alive, what Ray says) for a Ray supervisor name; alive is None when the cluster
    cannot be asked (its heartbeat decides then): it does not answer, or its address is
    not one of ``addresses`` (the attached targets')."""
    import httpx

    now = time.monotonic()
    with _lock:
        known = _verdicts.get(name)
    if known is not None and now - known[0] < _REMEMBER:
        return known[1], known[2]
    parsed = parse(name)
    if parsed is None:
        return None, ""
    address, submission_id = parsed
    if address not in addresses:
        return None, f"{address} is not the address of a compute target of this workspace"
    with _lock:
        silent = _silent.get(address)
    if silent is not None and now - silent[0] < _SILENT_CLUSTER:
        return None, silent[1]  # one timeout per cluster, not one per run of a listing
    try:
        info = job_info(address, submission_id)
    except (httpx.HTTPError, ValueError) as exc:
        alive: bool | None = None
        said = f"the Ray cluster at {address} did not answer: {exc}"
        with _lock:
            _silent[address] = (now, said)
    else:
        if info is None:
            alive, said = False, f"the Ray cluster at {address} has no job {submission_id}"
        else:
            alive = info.get("status") in ALIVE
            said = describe(info)
    with _lock:
        _verdicts[name] = (now, alive, said)
    return alive, said


def describe(info: dict[str, Any]) -> str:
    """Ray's account of a job, in one line: its status, message and exit code."""
    parts = [f"Ray job {info.get('submission_id')} is {info.get('status')}"]
    if info.get("message"):
        parts.append(str(info["message"]).strip())
    if info.get("error_type"):
        parts.append(f"error type {info['error_type']}")
    if info.get("driver_exit_code") is not None:
        parts.append(f"driver exit code {info['driver_exit_code']}")
    return cut("; ".join(parts))


def cut(text: str) -> str:
    """``text`` cut to ``MAX_MESSAGE`` characters for a run's error."""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def stop_pending(name: str | None, run_id: str, addresses: Collection[str]) -> bool:
    """Stop the run's job if Ray still holds it in its queue (best effort); True if it did.

    A job whose supervisor runs is left alone: the supervisor sees the cancel request in
    the workspace and stops the run's processes within its grace period, keeping their
    last logs, which Ray's own stop (SIGKILL after 3 s) would not.
    """
    import httpx

    parsed = parse(name)
    if parsed is None or parsed[0] not in addresses:
        return False
    address, submission_id = parsed
    try:
        info = job_info(address, submission_id)
        if info is None or info.get("status") != "PENDING":
            return False
        if (info.get("metadata") or {}).get("runyard_run_id") != run_id[:200]:
            return False  # not this run's job
        response = httpx.post(f"{address}/api/jobs/{submission_id}/stop", timeout=_TIMEOUT)
    except (httpx.HTTPError, ValueError):
        return False
    with _lock:
        _verdicts.pop(name or "", None)
    return response.status_code == 200 and bool(response.json().get("stopped"))
