"""Is a submitted run's supervisor alive? How readers decide, whatever the clocks say.

A script run's supervisor records heartbeats every ``heartbeat_seconds``, stamped with the
*database's* clock, and the name of its process (host key, pid, start time; see
``_owners``). Any reader (``get_status``, ``get_runs``, ``wait_for_completion``…) applies
one rule to the runs that are not finished:

- On the supervisor's own machine the reader asks the operating system: a live supervisor
  process means a live run, however old its heartbeat looks (a suspended laptop, a clock
  that jumped); a supervisor process that is gone fails the run at once, and its stderr
  goes into the run's ``system_logs/supervisor-stderr.txt`` and error.
- Elsewhere the heartbeat's age is measured with the database's clock too, so clock skew
  between machines does not matter: older than ``not_responding_seconds`` is
  NotResponding, older than ``failed_seconds`` is Failed.

Environment variables override the defaults, for every process alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from . import _owners, _ray_jobs
from .errors import Forbidden

if TYPE_CHECKING:
    from .artifacts.base import ArtifactStore
    from .records import RunRecord, SupervisedRun
    from .store.base import Store

DEFAULTS = {
    "RUNYARD_HEARTBEAT_SECONDS": 2.0,
    "RUNYARD_NOT_RESPONDING_SECONDS": 30.0,
    "RUNYARD_FAILED_SECONDS": 120.0,
}
CHECK_AFTER_BEATS = 2.5  # heartbeats missed before a reader asks whether the process lives
STDERR_LOG = "system_logs/supervisor-stderr.txt"
STDERR_LINES = 20
UNCLAIMED_STDERR_AGE = 86400.0  # a dead supervisor's stderr nobody collected: kept a day
FRESH_STDERR_AGE = 60.0  # younger files are never swept: their submitter may be locking them


def _setting(name: str) -> float:
    return seconds_setting(name, DEFAULTS[name])


def seconds_setting(name: str, default: float, allow_zero: bool = False) -> float:
    """A number of seconds from the environment variable ``name`` (positive, or 0 or more
    with ``allow_zero``); anything else is a UserError naming the variable."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    from .errors import UserError

    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value >= 0 if allow_zero else value > 0) or value == math.inf:
        what = "a number of seconds (0 or more)" if allow_zero else "a positive number of seconds"
        raise UserError(f"{name}={raw!r} is not {what}; fix or unset the variable")
    return value


def heartbeat_seconds() -> float:
    return _setting("RUNYARD_HEARTBEAT_SECONDS")


def not_responding_seconds() -> float:
    return _setting("RUNYARD_NOT_RESPONDING_SECONDS")


def failed_seconds() -> float:
    return _setting("RUNYARD_FAILED_SECONDS")


def expire_silent_runs(
    store: Store, artifacts: ArtifactStore | None = None, run_id: str | None = None
) -> int:
    """Apply the rule above to the late runs (and to ``run_id``); cheap when none is late.

    A run is late once it missed a few heartbeats (``CHECK_AFTER_BEATS``): then, if its
    supervisor ran on this machine, the process decides, so every reader (a listing too)
    sees a dead supervisor's run Failed within seconds; live supervisors beat and are not
    even looked at. Returns how many runs changed status.
    """
    late_after = not_responding_seconds()
    fail_after = failed_seconds()
    check_after = min(late_after, CHECK_AFTER_BEATS * heartbeat_seconds())
    candidates = store.supervised_runs(check_after, include=run_id)
    changed = 0
    spare: list[str] = []
    late_elsewhere = False
    clusters = frozenset[str]()
    if any(_ray_jobs.parse(run.supervisor) for run in candidates):
        clusters = _ray_jobs.attached(store)
    for run in candidates:
        verdict = supervisor_alive(run, clusters)
        if verdict is True or (verdict is None and _waiting_on_ray(run, clusters)):
            spare.append(run.id)
        elif verdict is False:
            try:
                changed += fail_dead_supervisor(store, artifacts, run, clusters)
            except Forbidden:  # a server's reader or run token: others will fail it
                pass
        elif run.silent_for >= late_after:
            late_elsewhere = True
    if late_elsewhere:
        changed += store.expire_silent_runs(late_after, fail_after, spare=spare)
    return changed


def _waiting_on_ray(run: SupervisedRun, clusters: Collection[str]) -> bool:
    """A run Ray keeps waiting for room has no supervisor to beat yet: a reader that cannot
    ask the cluster leaves it be (its supervisor beats from the moment it starts)."""
    parsed = _ray_jobs.parse(run.supervisor)
    return run.status == "Queued" and parsed is not None and parsed[0] in clusters


def supervisor_alive(run: SupervisedRun, clusters: Collection[str] = ()) -> bool | None:
    """True / False when the run's supervisor ran on this machine; None when unknown.

    The process the run names decides: its supervisor, or its submitter until the
    supervisor has recorded itself. Between the two, the lock on the supervisor's stderr
    file speaks: the submitter takes it before it creates the run and the supervisor
    inherits it, so it is held while the run is being submitted or supervised here.

    A run on a Ray cluster is alive while its job is pending or running there (it does not
    beat while Ray keeps it waiting for room): the cluster is asked if it is one of
    ``clusters``, the attached targets' addresses (see ``_ray_jobs``).
    """
    if _ray_jobs.parse(run.supervisor) is not None:
        return _ray_jobs.verdict(run.supervisor or "", clusters)[0]
    if run.supervisor:
        try:
            verdict = _owners.alive(run.supervisor)
        except ValueError:
            verdict = None
        if verdict is None:  # another machine's process: its heartbeat decides
            return None
        return verdict or _stderr_lock_held(run.id) is True
    return _stderr_lock_held(run.id)


def _stderr_lock_held(run_id: str) -> bool | None:
    """Is the lock on the run's supervisor stderr file held? None: no such file here."""
    return _owners.lock_held(supervisor_stderr_path(run_id))


def fail_dead_supervisor(
    store: Store,
    artifacts: ArtifactStore | None,
    run: SupervisedRun,
    clusters: Collection[str] = (),
) -> int:
    """Fail a run whose supervisor process is gone; its stderr goes into logs and error.

    A run whose cancel was requested is Canceled: nothing of it runs any more.
    """
    if run.status == "CancelRequested":
        record = store.set_status(run.id, "Canceled", only_from=("CancelRequested",))
        if record.status == "Canceled" and artifacts is not None:
            keep_supervisor_stderr(store, artifacts, run.id)
        return int(record.status == "Canceled")
    message = _death_message(run, clusters)
    error = {
        "error": {"code": "SupervisorDied", "message": message},
        "time": _format_time(time.time()),
    }
    record = store.set_status(run.id, "Failed", error=error)
    if record.status != "Failed" or (record.error or {}).get("error", {}).get("message") != message:
        return 0  # finished meanwhile
    if artifacts is not None:
        keep_supervisor_stderr(store, artifacts, run.id)
    return 1


def _death_message(run: SupervisedRun, clusters: Collection[str]) -> str:
    """Why the run failed: what Ray says of its job, or the local supervisor's stderr."""
    if _ray_jobs.parse(run.supervisor) is not None:
        said = _ray_jobs.verdict(run.supervisor or "", clusters)[1]
        return f"the run's job on the Ray cluster ended without finishing the run: {said}"
    pid = run.supervisor.split("-")[1] if run.supervisor else "?"
    if run.status == "NotStarted":
        message = (
            f"the run was never queued: the process that owned it (process {pid} on this "
            "machine: its supervisor, or the process submitting it) ended; "
        )
    else:
        message = (
            f"the run's supervisor (process {pid} on this machine) ended without finishing "
            "the run; "
        )
    lines = stderr_tail(run.id)
    if lines:
        message += "the last lines of its stderr (system_logs/supervisor-stderr.txt):\n"
        return message + "\n".join(lines)
    return message + (
        "it wrote nothing to stderr (killed with SIGKILL, by the out-of-memory killer, "
        "or the machine stopped)"
    )


# -- the supervisor's stderr ------------------------------------------------------------
def supervisor_stderr_path(run_id: str) -> str:
    """Where a supervisor's stderr goes while it lives (this user's temporary folder).

    The submitter creates it and takes an ``flock`` that the supervisor inherits, so the
    lock is held exactly as long as the supervisor lives.
    """
    folder = os.path.join(_owners.scratch_root(), _owners.SHARED_FOLDERS[0])
    os.makedirs(folder, mode=0o700, exist_ok=True)
    name = run_id
    if len(name.encode()) > 200:  # run ids may be 255 long; a file name may not be longer
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:16]
        name = f"{run_id.encode()[:180].decode('utf-8', 'ignore')}-{digest}"
    return os.path.join(folder, f"{name}.stderr.txt")


def stderr_tail(run_id: str) -> list[str]:
    """The last lines of a supervisor's stderr, if this machine has it."""
    try:
        with open(supervisor_stderr_path(run_id), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line[-500:] for line in text.strip().splitlines()[-STDERR_LINES:]]


def keep_supervisor_stderr(store: Store, artifacts: ArtifactStore, run_id: str) -> None:
    """Move a supervisor's stderr into the run's ``system_logs/`` (if it wrote anything)."""
    from ._run_files import store_artifact
    from .errors import Conflict, NotFound

    path = supervisor_stderr_path(run_id)
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size:
                try:
                    store_artifact(store, artifacts, run_id, STDERR_LOG, fh)
                except (Conflict, NotFound):
                    pass  # kept already, or the run is gone
    except FileNotFoundError:
        return
    _unlink(path)


def sweep_supervisor_stderr() -> None:
    """Remove the stderr files of dead supervisors: empty ones after a minute, others after
    a day. A file younger than a minute is not even locked to look: its submitter may be
    about to lock it (see ``execution.submit``)."""
    folder = os.path.dirname(supervisor_stderr_path("x"))
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            if time.time() - os.stat(path).st_mtime < FRESH_STDERR_AGE:
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its supervisor is alive
        try:
            info = os.fstat(fd)
            if info.st_size == 0 or time.time() - info.st_mtime > UNCLAIMED_STDERR_AGE:
                _unlink(path)
        finally:
            os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _format_time(t: float) -> str:
    """UTC ISO-8601 with milliseconds and a Z, as run times are shown."""
    import datetime

    text = datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


def cancel_status(run: RunRecord) -> str:
    """The status that cancels ``run``: CancelRequested for a supervised run whose
    supervisor is alive (it stops the script's processes, then marks the run Canceled),
    Canceled for any other run."""
    if run.heartbeat is not None and run.status != "NotResponding":
        return "CancelRequested"
    return "Canceled"
