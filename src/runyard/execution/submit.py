"""Experiment.submit for script runs: snapshot, create the run, start its supervisor."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

from .._validation import check_run_id
from ..errors import ExperimentExecutionError, UserError
from ..experiment import clean_tags
from ..records import NewRun
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
    from .._git import git_properties
    from .._snapshot import take_snapshot
    from ..run import Run, user_name

    if not isinstance(config, ScriptRunConfig):
        raise UserError(
            f"submit() takes a ScriptRunConfig, not {type(config).__name__}: "
            "ScriptRunConfig(source_directory='.', script='train.py')"
        )
    if run_id is not None:
        check_run_id(run_id)  # before anything is created
    rc = config.run_config
    if rc.target != "local":
        raise UserError(f"compute target {rc.target!r} is not available; use 'local'")
    source = os.path.abspath(config.source_directory)
    if not os.path.isdir(source):
        raise UserError(f"source_directory {config.source_directory!r} is not a folder")
    if rc.script is not None and not os.path.isfile(os.path.join(source, rc.script)):
        raise UserError(
            f"script {rc.script!r} does not exist in {source}; give a path relative to "
            "source_directory"
        )
    interpreter = rc.environment.python.interpreter()
    if shutil.which(interpreter) is None:
        raise UserError(
            f"the interpreter {interpreter!r} does not exist or is not executable; set "
            "environment.python.interpreter_path to a Python that does"
        )
    argv = command_line(rc, interpreter)
    if rc.command is not None and shutil.which(argv[0], path=_path_with(source)) is None:
        raise UserError(f"the command {argv[0]!r} was not found; check command=")
    clean = clean_tags(tags or {})
    workspace = experiment.workspace
    snapshot_id = take_snapshot(
        source, workspace._store, workspace._artifacts, exclude=workspace._own_folders()
    )
    properties = {"_azureml.ComputeTargetType": "local"}
    if rc.history.snapshot_project:
        properties["ContentSnapshotId"] = snapshot_id
    properties.update(git_properties(source))
    run_id = run_id or f"{experiment.name[:200]}_{int(time.time())}_{uuid.uuid4().hex[:8]}"
    (record,) = workspace._store.create_runs(
        experiment.id,
        [
            NewRun(
                id=run_id,
                parent_id=parent_run_id,
                type=SCRIPT_RUN_TYPE,
                target="local",
                status="NotStarted",
                tags=clean,
                properties=properties,
                run_definition=rc.to_dict(),
                submitted_by=user_name(),
                snapshot_id=snapshot_id,
                heartbeat=True,
            )
        ],
    )
    _start_supervisor(workspace, record.id)
    return Run._from_record(experiment, record)


def _path_with(folder: str) -> str:
    return os.pathsep.join([folder, os.environ.get("PATH", "")])


def _start_supervisor(workspace: Any, run_id: str) -> None:
    """Start the run's detached supervisor and record which process it is.

    Its stderr goes to a file under an ``flock`` that the supervisor inherits: the lock is
    held exactly while it lives, so leftovers can be told from live files. If it cannot be
    started, the run is marked Failed (it would otherwise hold up the local queue).
    """
    from .. import _liveness, _owners

    env = os.environ.copy()
    env["RUNYARD_URI"] = workspace.uri
    env["RUNYARD_ARTIFACTS"] = workspace.artifacts_root
    env["RUNYARD_MAX_CONCURRENT_RUNS"] = str(workspace.max_concurrent_runs)
    env.pop("RUNYARD_RUN_ID", None)
    for proc in list(_supervisors):  # reap the ones that ended
        if proc.poll() is not None:
            _supervisors.remove(proc)
    crash_log = _liveness.supervisor_stderr_path(run_id)
    home = os.path.expanduser("~")
    try:
        with open(crash_log, "wb") as stderr:
            fcntl.flock(stderr, fcntl.LOCK_EX)
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
        try:
            os.unlink(crash_log)
        except OSError:
            pass
        raise ExperimentExecutionError(message) from None
    _supervisors.append(proc)
    try:
        name = _owners.process_name(proc.pid, zombie_ok=True)
    except ProcessLookupError:  # pragma: no cover - cannot be inspected here
        return
    workspace._store.heartbeat(run_id, supervisor=name)
