"""Submitting a script run to a Ray compute target, through Ray's Jobs API.

The run's snapshot becomes the job's working directory; the job's entrypoint is runyard's
supervisor for Ray (``ray_supervisor``), which moves the run through its statuses on the
cluster exactly as the local supervisor does. The job carries the run's identity (the
workspace's URI and a token scoped to the run) in its environment variables, so nothing
on the cluster needs the submitter's credentials, and the submitting machine may go away
once the job is accepted.

A run that is one process without pip requirements asks Ray for one CPU for its job, so
it waits in Ray's queue (status Queued) and starts its script at once when there is room.
Other runs (several processes, or a pip environment) start their supervisor with no CPU of
its own; it reserves the run's CPUs in one placement group (Queued), then starts one Ray
actor per process, whose runtime environment holds the pip packages (Preparing while Ray
builds it).
"""

from __future__ import annotations

import logging
import shlex
import tempfile
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .. import _liveness, _ray_jobs
from ..errors import ExperimentExecutionError, UserError
from ..records import NewRun
from . import distributed

if TYPE_CHECKING:
    from ..experiment import Experiment
    from ..records import ComputeRecord, RunRecord
    from ..workspace import Workspace
    from .run_configuration import RunConfiguration

ENTRYPOINT = "python -m runyard.execution.ray_supervisor"
_BUSY_RETRIES = 40  # times 0.5 s: a new cluster's job agent takes a few seconds to come up


def check_reachable(workspace: Workspace, target: str) -> None:
    """A cluster's processes write to the workspace: it must be a server or PostgreSQL."""
    uri = workspace.uri
    if uri.startswith(("http://", "https://", "postgresql://", "postgres://")):
        return
    raise UserError(
        f"compute target {target!r} runs scripts on a Ray cluster, which cannot reach this "
        f"workspace ({uri}: a file on this machine). Use a workspace the cluster can reach: "
        "a runyard server (`runyard serve`, then Workspace('http://host:8600')) or "
        "PostgreSQL with artifacts on shared storage (Workspace('postgresql://...', "
        "artifacts='s3://bucket/prefix'))"
    )


def uses_placement_group(rc: RunConfiguration) -> bool:
    """Does the run start its processes as Ray actors (several processes, or pip)?"""
    processes, _ = distributed.layout(rc)
    return processes > 1 or rc.environment.requirements_hash() is not None


def submit(
    workspace: Workspace,
    experiment: Experiment,
    compute: ComputeRecord,
    new_run: NewRun,
) -> RunRecord:
    """Create the run and hand it to the cluster; return it Queued.

    If the cluster refuses the job (or cannot be reached), the run is Failed with Ray's
    reason and ExperimentExecutionError is raised.
    """
    from ..compute import ray_version
    from .run_configuration import RunConfiguration
    from .supervisor import extract_snapshot, run_error

    limit = submit_seconds()  # a bad setting, or a cluster that does not answer: no run
    ray_version(compute.address)
    rc = RunConfiguration.from_dict(new_run.run_definition or {})
    submission_id = f"runyard-{uuid.uuid4().hex}"
    supervisor = _ray_jobs.supervisor_name(compute.address, submission_id)
    properties = {
        **new_run.properties,
        "_azureml.ComputeTargetType": "ray",
        _ray_jobs.PROPERTY: supervisor,
    }
    fields = {f: getattr(new_run, f) for f in new_run.__dataclass_fields__}
    (record,) = workspace._store.create_runs(
        experiment.id, [NewRun(**{**fields, "properties": properties, "target": compute.name})]
    )
    workspace._store.heartbeat(record.id, supervisor=supervisor)
    stop_beating = threading.Event()
    beater = threading.Thread(target=_beat, args=(workspace, record.id, stop_beating), daemon=True)
    beater.start()  # until Ray has the job: a long upload must not look like a dead run
    try:
        env = {
            "RUNYARD_URI": workspace.uri,
            "RUNYARD_ARTIFACTS": workspace.artifacts_root,
            **workspace._store.run_credentials(record.id),
        }
        with tempfile.TemporaryDirectory(prefix="runyard-ray-") as folder:
            extract_snapshot(workspace, new_run.snapshot_id, folder)
            _within_limit(limit, _submit_job, compute, record.id, submission_id, folder, env, rc)
    except BaseException as exc:
        message = (
            f"the Ray cluster {compute.name!r} ({compute.address}) did not take the job: {exc}"
        )
        error = run_error(message, "RayJobNotSubmitted")
        found = workspace._store.set_status(
            record.id, "Failed", error=error, only_from=("NotStarted",)
        )
        if found.status == "CancelRequested":  # canceled meanwhile: nothing of it runs
            workspace._store.set_status(record.id, "Canceled", only_from=("CancelRequested",))
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ExperimentExecutionError(message) from None
    finally:
        stop_beating.set()
    return workspace._store.set_status(record.id, "Queued", only_from=("NotStarted",))


def submit_seconds() -> float:
    """How long a submission (the snapshot's upload included) may take."""
    return _liveness.seconds_setting("RUNYARD_RAY_SUBMIT_SECONDS", 300.0)


def _within_limit(limit: float, call: Any, *args: Any) -> None:
    """``call(*args)`` in a thread, waited for at most ``limit`` seconds: Ray's client
    waits for ever for a dashboard that takes the connection and never answers."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call(*args)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=target, daemon=True, name="runyard-ray-submit")
    worker.start()
    worker.join(limit)
    if not outcome:
        raise TimeoutError(
            f"no answer within {limit:g} s (RUNYARD_RAY_SUBMIT_SECONDS); check the address "
            "and that the cluster's dashboard is up"
        )
    if outcome[0] is not None:
        raise outcome[0]


def _beat(workspace: Workspace, run_id: str, stop: threading.Event) -> None:
    interval = _liveness.heartbeat_seconds()
    while not stop.wait(interval):
        try:
            workspace._store.heartbeat(run_id)
        except Exception:  # the submission itself reports what is wrong
            return


def _submit_job(
    compute: ComputeRecord,
    run_id: str,
    submission_id: str,
    folder: str,
    env: dict[str, str],
    rc: RunConfiguration,
) -> None:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        raise UserError(
            "submitting to a Ray compute target needs Ray's client: pip install 'runyard[ray]'"
        ) from None
    # Ray's client tells each upload on stderr (INFO): not the user's business
    loggers = [
        logging.getLogger(f"ray.dashboard.modules.{m}") for m in ("dashboard_sdk", "job.sdk")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        _submit(JobSubmissionClient(compute.address), run_id, submission_id, folder, env, rc)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _submit(
    client: Any, run_id: str, submission_id: str, folder: str, env: dict[str, str],
    rc: RunConfiguration,
) -> None:  # fmt: skip
    for attempt in range(_BUSY_RETRIES + 1):
        try:
            client.submit_job(
                entrypoint=f"{ENTRYPOINT} {shlex.quote(run_id)}",
                submission_id=submission_id,
                runtime_env={"working_dir": folder, "env_vars": env},
                entrypoint_num_cpus=0 if uses_placement_group(rc) else 1,
                metadata={"runyard_run_id": run_id[:200]},
            )
            return
        except RuntimeError as exc:  # a cluster just started: "please try again later"
            if "try again later" not in str(exc) or attempt == _BUSY_RETRIES:
                raise
            time.sleep(0.5)
