"""Experiment.submit for script runs: snapshot, create the run, start its supervisor."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from .._validation import check_run_id
from ..errors import Conflict, ExperimentExecutionError, UserError
from ..experiment import clean_tags
from ..records import NewRun
from . import distributed
from .script_run_config import ScriptRunConfig, command_line

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..run import Run

SCRIPT_RUN_TYPE = "azureml.scriptrun"
_supervisors: list[subprocess.Popen[bytes]] = []  # kept so they are not reported as leaked


def submit(
    experiment: Experiment,
    config: ScriptRunConfig,
    tags: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    run_id: str | None = None,
) -> Run:
    """Check the config, snapshot its folder, create the run and hand it to a supervisor."""
    from .. import _liveness
    from .._git import git_properties
    from .._snapshot import take_snapshot
    from ..run import Run

    if not isinstance(config, ScriptRunConfig):
        raise UserError(
            f"submit() takes a ScriptRunConfig, not {type(config).__name__}: "
            "ScriptRunConfig(source_directory='.', script='train.py')"
        )
    if run_id is not None:
        check_run_id(run_id)  # before anything is created
    rc = config.run_config
    workspace = experiment.workspace
    compute = None if rc.target == "local" else _compute(workspace, rc.target)
    if compute is None and distributed.layout(rc) != (1, 1):
        raise UserError(
            "a distributed run (distributed_job_config) needs a Ray compute target: "
            "ScriptRunConfig(..., compute_target='my-ray', distributed_job_config=...)"
        )
    source = os.path.abspath(config.source_directory)
    if not os.path.isdir(source):
        raise UserError(f"source_directory {config.source_directory!r} is not a folder")
    if rc.script is not None and not os.path.isfile(os.path.join(source, rc.script)):
        raise UserError(
            f"script {rc.script!r} does not exist in {source}; give a path relative to "
            "source_directory"
        )
    interpreter = rc.environment.python.interpreter()
    if compute is None and shutil.which(interpreter) is None:
        raise UserError(
            f"the interpreter {interpreter!r} does not exist or is not executable; set "
            "environment.python.interpreter_path to a Python that does"
        )
    argv = command_line(rc, interpreter)
    if (
        compute is None
        and rc.command is not None
        and shutil.which(argv[0], path=_path_with(source)) is None
    ):
        raise UserError(f"the command {argv[0]!r} was not found; check command=")
    clean = clean_tags(tags or {})
    snapshot_id = take_snapshot(
        source, workspace._store, workspace._artifacts, exclude=workspace._own_folders()
    )
    properties = {"_azureml.ComputeTargetType": "local"}
    if rc.history.snapshot_project:
        properties["ContentSnapshotId"] = snapshot_id
    properties.update(git_properties(source))
    if run_id is None:  # the experiment's name, cut to fit 255 bytes with what follows
        stem = re.sub(r"[^\w-]", "_", experiment.name).encode()[:200].decode("utf-8", "ignore")
        run_id = check_run_id(f"{stem}_{int(time.time())}_{uuid.uuid4().hex[:8]}")
    if compute is not None:
        from . import ray_target

        new_run = _new_run(run_id, parent_run_id, rc, clean, properties, snapshot_id)
        record = ray_target.submit(workspace, experiment, compute, new_run)
        return Run._from_record(experiment, record)
    owner_file = _liveness.supervisor_stderr_path(run_id)
    with _owner_lock(owner_file, run_id) as stderr:
        try:
            record = _create_run(
                workspace, experiment, run_id, parent_run_id, rc, clean, properties, snapshot_id
            )
        except BaseException:  # no run of ours: the file must not speak for another's
            os.unlink(owner_file)
            raise
        try:
            _start_supervisor(workspace, record.id, stderr)
        except BaseException as exc:  # Ctrl-C: the run must not wait for a supervisor
            if not isinstance(exc, ExperimentExecutionError):
                message = f"the submission was interrupted before the supervisor started: {exc!r}"
                error = {"error": {"code": "SupervisorNotStarted", "message": message}}
                workspace._store.set_status(record.id, "Failed", error=error)
            raise
    return Run._from_record(experiment, record)


@contextlib.contextmanager
def _owner_lock(path: str, run_id: str) -> Iterator[BinaryIO]:
    """The supervisor's stderr file, locked before the run exists (see ``_liveness``).

    The lock is held by this process until the supervisor has inherited it, so on this
    machine a run whose submitter or supervisor is gone is told at once from one on its
    way, whatever moment the submitter is killed at. An unlocked file is a leftover
    (removed by ``_liveness.sweep_supervisor_stderr``).
    """
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(
            f"a run with id {run_id!r} is being submitted or supervised already"
        ) from None
    os.ftruncate(fd, 0)
    with open(fd, "wb") as stderr:
        yield stderr


def _create_run(
    workspace: Any, experiment: Experiment, run_id: str, parent_run_id: str | None, rc: Any,
    tags: dict[str, Any], properties: dict[str, str], snapshot_id: str,
) -> Any:  # fmt: skip
    """Create the NotStarted run, owned by this process until its supervisor starts."""
    from .. import _owners

    new_run = _new_run(run_id, parent_run_id, rc, tags, properties, snapshot_id)
    (record,) = workspace._store.create_runs(experiment.id, [new_run])
    workspace._store.heartbeat(record.id, supervisor=_owners.process_name())
    return record


def _new_run(
    run_id: str, parent_run_id: str | None, rc: Any, tags: dict[str, Any],
    properties: dict[str, str], snapshot_id: str,
) -> NewRun:  # fmt: skip
    from ..run import user_name

    return NewRun(
        id=run_id,
        parent_id=parent_run_id,
        type=SCRIPT_RUN_TYPE,
        target=rc.target,
        status="NotStarted",
        tags=tags,
        properties=properties,
        run_definition=rc.to_dict(),
        submitted_by=user_name(),
        snapshot_id=snapshot_id,
        heartbeat=True,
    )


def _compute(workspace: Any, name: str) -> Any:
    """The attached compute target ``name``, and a workspace its cluster can reach."""
    from ..errors import NotFound
    from . import ray_target

    try:
        compute = workspace._store.get_compute(name)
    except NotFound:
        raise UserError(
            f"compute target {name!r} is not attached to this workspace; attach it "
            f"(`runyard compute attach {name} --type ray --address http://head:8265`) "
            "or use 'local'"
        ) from None
    ray_target.check_reachable(workspace, name)
    return compute


def _path_with(folder: str) -> str:
    return os.pathsep.join([folder, os.environ.get("PATH", "")])


def _start_supervisor(workspace: Any, run_id: str, stderr: BinaryIO) -> None:
    """Start the run's detached supervisor and record which process it is.

    Its stderr goes to ``stderr``, a file under an ``flock`` that the supervisor inherits:
    the lock is held exactly while it lives, so leftovers can be told from live files. If
    it cannot be started, the run is marked Failed (it would otherwise hold up the local
    queue).
    """
    from .. import _owners

    env = os.environ.copy()
    env["RUNYARD_URI"] = workspace.uri
    env["RUNYARD_ARTIFACTS"] = workspace.artifacts_root
    env["RUNYARD_MAX_CONCURRENT_RUNS"] = str(workspace.max_concurrent_runs)
    env.pop("RUNYARD_RUN_ID", None)
    env.pop("RUNYARD_TOKEN", None)
    env.update(workspace._store.run_credentials(run_id))
    for proc in list(_supervisors):  # reap the ones that ended
        if proc.poll() is not None:
            _supervisors.remove(proc)
    home = os.path.expanduser("~")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runyard.execution.supervisor", run_id],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            cwd=home if os.path.isdir(home) else "/",
        )
    except OSError as exc:
        message = f"runyard could not start the run's supervisor ({sys.executable}): {exc}"
        workspace._store.set_status(
            run_id, "Failed", error={"error": {"code": "SupervisorNotStarted", "message": message}}
        )
        raise ExperimentExecutionError(message) from None
    _supervisors.append(proc)
    try:
        name = _owners.process_name(proc.pid, zombie_ok=True)
    except ProcessLookupError:  # pragma: no cover - cannot be inspected here
        return
    workspace._store.heartbeat(run_id, supervisor=name)
