"""Run: one execution of training code, with its status, metrics, tags and files."""

from __future__ import annotations

import builtins
import os
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from . import _liveness, _process, _ray_jobs
from ._logging_buffer import MetricBuffer
from ._run_files import FilesMixin
from ._run_metrics import MetricsMixin
from ._validation import check_key_and_value, check_name, check_run_id, check_status, check_text
from .errors import Conflict, RunEnvironmentError, RunyardError, UserError
from .experiment import clean_tags, filter_dict
from .records import TERMINAL_STATUSES, NewRun, RunQuery, RunRecord
from .store.base import iter_runs

if TYPE_CHECKING:
    from .experiment import Experiment

ENV_RUN_ID = "RUNYARD_RUN_ID"
ENV_EXPERIMENT = "RUNYARD_EXPERIMENT"
BATCH_CHILD_TAG = "azureml.batch_child_number"
MAX_CHILDREN_PER_CALL = 100


def format_time(ts: float | None) -> str | None:
    """UTC ISO-8601 with at least 3 fraction digits and a Z: ``2021-06-23T13:08:03.554Z``."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    head, frac = text.split(".")
    frac = frac.rstrip("0").ljust(3, "0")
    return f"{head}.{frac}Z"


class Run(MetricsMixin, FilesMixin):
    """A run of an experiment.

        >>> run = exp.start_logging()           # doctest: +SKIP
        >>> run.log("loss", 0.25, step=1)       # doctest: +SKIP
        >>> run.complete()                      # doctest: +SKIP

    ``Run(experiment, run_id)`` and ``Run.get(workspace, run_id)`` open an existing run.
    """

    _context_singleton: Run | None = None

    def __init__(self, experiment: Experiment, run_id: str, outputs: str | None = None) -> None:
        record = experiment.workspace._store.get_run(check_run_id(run_id))
        if record.experiment_id != experiment.id:
            raise UserError(
                f"run {run_id} belongs to experiment {record.experiment_name!r}, "
                f"not {experiment.name!r}; use Run.get(workspace, run_id)"
            )
        self._setup(experiment, record)
        if outputs:
            self._outputs_dir = os.path.abspath(outputs)

    def _setup(self, experiment: Experiment, record: RunRecord) -> None:
        self.experiment = experiment
        self._store = experiment.workspace._store
        self._artifacts = experiment.workspace._artifacts
        self._record = record
        self._buffer_obj: MetricBuffer | None = None
        self._outputs_dir: str | None = None
        self._system_managed = False
        self._parent: Run | None = None
        self._capture: _process.StreamCapture | None = None
        self._log_to_record = False
        self._logs_dir: str | None = None
        self._synced: dict[str, tuple[int, int]] = {}

    @classmethod
    def _from_record(cls, experiment: Experiment, record: RunRecord) -> Run:
        self = cls.__new__(cls)
        self._setup(experiment, record)
        return self

    @classmethod
    def _start(
        cls,
        experiment: Experiment,
        *,
        parent: Run | None,
        run_id: str | None,
        outputs: str | os.PathLike[str] | bool | None,
        snapshot_directory: str | os.PathLike[str] | None,
        display_name: str | None,
        description: str | None,
        tags: dict[str, Any] | None,
        name: str | None = None,
    ) -> Run:
        from ._git import git_properties
        from ._snapshot import take_snapshot

        run_id = check_run_id(run_id) if run_id is not None else str(uuid.uuid4())
        clean = clean_tags(tags or {})
        _check_text(display_name, "display_name", 256)
        _check_text(description, "description", 5000)
        properties: dict[str, str] = {}
        snapshot_id = None
        if snapshot_directory is not None:
            workspace = experiment.workspace
            snapshot_id = take_snapshot(
                os.fspath(snapshot_directory),
                workspace._store,
                workspace._artifacts,
                exclude=workspace._own_folders(),
            )
            properties["ContentSnapshotId"] = snapshot_id
            properties.update(git_properties(os.fspath(snapshot_directory)))
        outputs_dir = None
        if outputs not in (None, False, ""):
            outputs_dir = os.path.abspath(os.fspath(outputs))  # type: ignore[arg-type]
        (record,) = experiment.workspace._store.create_runs(
            experiment.id,
            [
                NewRun(
                    id=run_id,
                    parent_id=parent.id if parent else None,
                    display_name=display_name,
                    description=description,
                    tags=clean,
                    properties=properties,
                    name=name,
                    snapshot_id=snapshot_id,
                    submitted_by=user_name(),
                )
            ],
        )
        run = cls._from_record(experiment, record)
        if outputs_dir:
            os.makedirs(outputs_dir, exist_ok=True)
            run._outputs_dir = outputs_dir
        run._parent = parent
        _process.track(run)
        return run

    # -- identity ---------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        """Deprecated internal name; prefer ``display_name``."""
        return self._record.name or f"run_{self.id}"

    @property
    def number(self) -> int:
        """Increasing per experiment: 1 for its first run."""
        return self._record.number

    @property
    def type(self) -> str | None:
        return self._record.type

    @property
    def status(self) -> str:
        """The status as of the last fetch; ``get_status()`` fetches it."""
        return self._record.status

    @property
    def tags(self) -> dict[str, str | None]:
        return dict(self._record.tags)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._record.properties)

    @property
    def display_name(self) -> str | None:
        return self._record.display_name

    @display_name.setter
    def display_name(self, value: str | None) -> None:
        _check_text(value, "display_name", 256)
        self._record = self._store.update_run(self.id, display_name=value)

    @property
    def description(self) -> str | None:
        return self._record.description

    @description.setter
    def description(self, value: str | None) -> None:
        _check_text(value, "description", 5000)
        self._record = self._store.update_run(self.id, description=value)

    @property
    def parent(self) -> Run | None:
        if self._parent is None and self._record.parent_id:
            self._parent = type(self)._from_record(
                self.experiment, self._store.get_run(self._record.parent_id)
            )
        return self._parent

    def __repr__(self) -> str:
        return (
            f"Run(Experiment: {self.experiment.name},\nId: {self.id},\n"
            f"Type: {self.type},\nStatus: {self.status})"
        )

    def _repr_html_(self) -> str:
        from .notebook import run_html

        return run_html(self)

    def get_portal_url(self) -> str:
        """The URL of this run's page in the studio (the server's, or ``runyard studio``'s
        for a local workspace)."""
        return f"{self.experiment.workspace._studio_url()}/runs/{quote(self.id, safe='')}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @staticmethod
    def get(workspace: Any, run_id: str) -> Run:
        """The run ``run_id`` of ``workspace``, whatever its experiment."""
        run: Run = workspace.get_run(run_id)
        return run

    @staticmethod
    def list(
        experiment: Experiment,
        type: str | None = None,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        status: str | None = None,
        include_children: bool = False,
    ) -> Iterator[Run]:
        return experiment.get_runs(
            type=type,
            tags=tags,
            properties=properties,
            status=status,
            include_children=include_children,
        )

    # -- status ---------------------------------------------------------------------
    def _refresh(self) -> RunRecord:
        self._record = self._store.get_run(self.id)
        return self._record

    def get_status(self) -> str:
        """Fetch the status (a terminal status is never fetched again)."""
        if self._record.status in TERMINAL_STATUSES:
            return self._record.status
        if self._record.heartbeat is not None:
            _liveness.expire_silent_runs(self._store, self._artifacts, self.id)
        return self._refresh().status

    def get_detailed_status(self) -> dict[str, Any]:
        status = self.get_status()
        details = "Waiting for a free local slot" if status == "Queued" else None
        return {"status": status, "details": details}

    def get_details(self) -> dict[str, Any]:
        """Run details with the keys of the Azure ML run history (None values left out)."""
        record = self._refresh()
        log_files = {
            a.path: self._artifacts.url(self.id, a.path)
            for a in self._store.list_artifacts(self.id)
            if a.path.startswith(_LOG_PREFIXES)
        }
        details: dict[str, Any] = {
            "runId": record.id,
            "target": record.target,
            "status": record.status,
            "startTimeUtc": format_time(record.start),
            "endTimeUtc": format_time(record.end),
            "services": {},
            "properties": dict(record.properties),
            "inputDatasets": [],
            "outputDatasets": [],
            "runDefinition": record.run_definition,
            "logFiles": log_files,
            "error": record.error,
            "submittedBy": record.submitted_by,
        }
        return {k: v for k, v in details.items() if v is not None}

    def get_details_with_logs(self) -> dict[str, Any]:
        """``get_details()`` with each ``logFiles`` value replaced by the file's text."""
        details = self.get_details()
        logs = {}
        for path in details.get("logFiles", {}):
            with self._artifacts.open(self.id, path) as fh:
                logs[path] = fh.read().decode("utf-8", errors="replace")
        details["logFiles"] = logs
        return details

    def to_dict(self) -> dict[str, Any]:
        """The run as stored, with the snake_case keys of ``az ml run show`` (None left out).

        >>> run.to_dict()["status"]        # doctest: +SKIP
        'Completed'
        """
        r = self._record
        data: dict[str, Any] = {
            "run_id": r.id,
            "run_number": r.number,
            "root_run_id": r.root_id,
            "parent_run_id": r.parent_id,
            "experiment_id": r.experiment_id,
            "status": r.status,
            "created_utc": format_time(r.created),
            "start_time_utc": format_time(r.start),
            "end_time_utc": format_time(r.end),
            "display_name": r.display_name,
            "description": r.description,
            "run_type": r.type,
            "target": r.target,
            "properties": dict(r.properties),
            "tags": dict(r.tags),
            "run_definition": r.run_definition,
            "created_by": {"user_name": r.submitted_by} if r.submitted_by else None,
            "heartbeat_enabled": r.heartbeat is not None,
            "error": r.error,
        }
        return {k: v for k, v in data.items() if v is not None}

    def start(self) -> None:
        """Move a NotStarted run (from ``create_children``) to Running."""
        self._set_status("Running")

    def _set_status(self, status: str, error: dict[str, Any] | None = None) -> None:
        before = self._record.status
        self._record = self._store.set_status(self.id, status, error=error)
        if self._record.status != status and before in TERMINAL_STATUSES:
            warnings.warn(
                f"run {self.id} is already {self._record.status}; a finished run's status "
                f"does not change, so it was not set to {status}",
                RuntimeWarning,
                stacklevel=3,
            )

    def flush(self, timeout_seconds: int = 300) -> None:
        """Write every metric logged so far; on return they are durable."""
        if self._buffer_obj is not None:
            self._buffer_obj.flush()

    def _finish(self, status: str, error: dict[str, Any] | None = None) -> None:
        """Store what the run holds, then set ``status``; Completed only if all was stored."""
        problems: builtins.list[RunyardError] = []
        for store_what_it_holds in (
            self.flush,
            self._collect_outputs,
            self._record_user_log,
            self._sync_logs,
        ):
            try:
                store_what_it_holds()
            except RunyardError as exc:
                problems.append(exc)
        if problems and status == "Completed":
            status = "Failed"
            error = _error_body(
                "the run could not be completed: part of what it holds was not stored: "
                + "; ".join(map(str, problems)),
                "RunDataNotStored",
            )
        if self._system_managed:
            if error is not None:  # the supervisor owns the status; keep the error
                self._record = self._store.update_run(self.id, error=error)
        else:
            self._set_status(status, error)
            _process.untrack(self)
        if problems:
            raise problems[0]

    def _sync_logs(self) -> None:
        """Upload ``./logs`` of a ``with`` block (the files changed since the last upload)."""
        if self._logs_dir is not None and not self._system_managed:
            self._sync_folder(self._logs_dir, "logs")

    def complete(self, _set_status: bool = True) -> None:
        """Flush metrics, collect ``./outputs``, mark the run Completed."""
        self._finish("Completed")

    def fail(
        self,
        error_details: str | BaseException | None = None,
        error_code: str | None = None,
        _set_status: bool = True,
    ) -> None:
        """Flush, collect outputs and mark the run Failed with ``error_details``."""
        self._finish("Failed", _error_body(error_details, error_code))

    def cancel(self) -> None:
        """Stop the run: Canceled at once, or CancelRequested for a submitted script run.

        A script run's supervisor then stops every process of the script and marks the
        run Canceled.
        """
        if self._system_managed:
            warnings.warn("a submitted run is canceled by its submitter", stacklevel=2)
            return
        if self._record.heartbeat is not None:
            self.get_status()  # a supervised run: the liveness rule applies first
        if _liveness.cancel_status(self._record) == "CancelRequested":
            self._set_status("CancelRequested")
            name = self._record.properties.get(_ray_jobs.PROPERTY)
            if name:  # a run still in a Ray cluster's queue leaves it
                _ray_jobs.stop_pending(name, self.id, _ray_jobs.attached(self._store))
            return
        self._finish("Canceled")

    def wait_for_completion(
        self, show_output: bool = False, wait_post_processing: bool = False,
        raise_on_error: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """Wait until the run finishes; return ``get_details()``.

        ``show_output=True`` streams ``user_logs/std_log.txt`` as it grows. A Failed run
        raises ActivityFailedError (unless ``raise_on_error=False``); Canceled returns.
        Without ``wait_post_processing`` (and without output) it returns at Finalizing.
        """
        from ._waiting import wait_for_completion

        return wait_for_completion(self, show_output, wait_post_processing, raise_on_error)

    def submit_child(self, config: Any, tags: dict[str, Any] | None = None, **kwargs: Any) -> Run:
        """Submit ``config`` as a child run of this one."""
        return self.experiment.submit(config, tags, _parent_run_id=self.id, **kwargs)

    def get_all_logs(self, destination: str | None = None) -> builtins.list[str]:
        """Write every log file of the run under ``destination``; return their paths."""
        target = os.path.abspath(destination or os.path.join("assets", self.id))
        if os.path.exists(target) and not os.path.isdir(target):
            raise UserError(f"cannot write logs into {target}: it is a file, not a folder")
        written = []
        for path in self.get_details().get("logFiles", {}):
            local = os.path.join(target, *path.split("/"))
            self.download_file(path, local)
            written.append(local)
        return written

    # -- context manager ------------------------------------------------------------
    def __enter__(self) -> Run:
        if not self._system_managed and self._capture is None:
            self._logs_dir = os.path.abspath("logs")
            self._capture = self._start_capture()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if self._capture is not None:
            capture, self._capture = self._capture, None
            try:
                capture.stop(exc)
            finally:
                self._log_to_record = True  # recorded by _finish: its failure fails the run
        if self._logs_dir is not None:
            local_copy = os.path.join(self._logs_dir, "user_log.txt")
            if os.path.isfile(local_copy):  # an older runyard's file: the capture is the log
                info = os.stat(local_copy)
                self._synced[USER_LOG] = (info.st_size, info.st_mtime_ns)
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.complete()
        else:  # the block's own exception goes on; a storage problem is only reported
            try:
                if _process.terminated:
                    self.fail(_process.SIGTERM_MESSAGE, error_code="Terminated")
                else:
                    self.fail(exc)
            except RunyardError as problem:
                warnings.warn(f"run {self.id} failed, and {problem}", RuntimeWarning, stacklevel=2)
        return False

    def _start_capture(self) -> _process.StreamCapture | None:
        """Tee stdout and stderr straight into this run's own ``logs/user_log.txt``.

        The file is the artifact itself (a streaming one, readable while the block runs),
        so no other run, earlier or concurrent, shares it and no temporary file is left.
        """
        from .records import ArtifactRecord

        try:
            self._store.add_artifact(ArtifactRecord(self.id, USER_LOG, 0, "", time.time(), True))
        except Conflict:
            warnings.warn(
                f"{USER_LOG} of run {self.id} was uploaded as a regular file, so the output "
                "of this with block is not captured",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        capture = _process.StreamCapture(self._artifacts.open_append(self.id, USER_LOG))
        capture.start()
        return capture

    def _record_user_log(self) -> None:
        """Record the captured ``logs/user_log.txt`` of a ``with`` block, once it ended."""
        if self._log_to_record:
            self._record_streaming(USER_LOG)
            self._log_to_record = False

    # -- tags and properties -------------------------------------------------------------
    def tag(self, key: str, value: Any = None) -> None:
        """Set one tag; ``value=None`` makes a key-only tag."""
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Merge ``tags`` into the run's tags (values become strings; None stays None)."""
        clean = clean_tags(tags)
        if clean:
            self._store.set_tags(self.id, clean)
            self._refresh()

    def remove_tags(self, tags: builtins.list[str] | str) -> None:
        keys = [tags] if isinstance(tags, str) else list(tags)
        self._store.remove_tags(self.id, keys)
        self._refresh()

    def get_tags(self) -> dict[str, str | None]:
        return dict(self._refresh().tags)

    def add_properties(self, properties: dict[str, Any]) -> None:
        """Add properties; an existing key keeps its value (a different one is a Conflict)."""
        if not isinstance(properties, dict):
            raise UserError("add_properties takes a dict such as {'author': 'me'}")
        clean = {}
        for key, value in properties.items():
            check_name(key, "property key")
            if value is None:
                raise UserError(f"property {key!r} needs a value; properties cannot be None")
            clean[key] = check_text(
                value if isinstance(value, str) else str(value), f"property {key!r}"
            )
            check_key_and_value(key, clean[key], "property")
        self._store.add_properties(self.id, clean)
        self._refresh()

    def get_properties(self) -> dict[str, str]:
        return dict(self._refresh().properties)

    # -- children --------------------------------------------------------------------------
    def child_run(
        self, name: str | None = None, run_id: str | None = None, outputs: str | None = None
    ) -> Run:
        """Create and start a child run (usable as a context manager)."""
        return type(self)._start(
            self.experiment,
            parent=self,
            run_id=run_id,
            outputs=outputs,
            snapshot_directory=None,
            display_name=name,
            description=None,
            tags=None,
            name=f"{self.name}>{name}" if name else None,
        )

    def create_children(
        self,
        count: int | None = None,
        tag_key: str | None = None,
        tag_values: builtins.list[Any] | None = None,
    ) -> builtins.list[Run]:
        """Create ``count`` children (or one per value of ``tag_values``) in one transaction."""
        if count is not None and (tag_key is not None or tag_values is not None):
            raise UserError("count can not be set when tag_key and tag_values are set")
        if tag_key is not None and tag_values is None:
            raise UserError("tag_values must not be null when tag_key is set")
        if tag_values is not None and tag_key is None:
            raise UserError("tag_key must not be null when tag_values is set")
        if count is None and tag_values is None:
            raise UserError("Either count or tag_key and tag_values must be set")
        if count is not None:
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise UserError(f"count must be a positive integer, not {count!r}")
            tag_list: list[dict[str, Any]] = [{BATCH_CHILD_TAG: str(i)} for i in range(count)]
        else:
            assert tag_key is not None and tag_values is not None
            tag_list = [{tag_key: value} for value in tag_values]
        if len(tag_list) > MAX_CHILDREN_PER_CALL:
            raise UserError("create_children can not create more than 100 runs")
        submitted_by = user_name()
        new = [
            NewRun(
                id=str(uuid.uuid4()),
                parent_id=self.id,
                tags=clean_tags(t),
                submitted_by=submitted_by,
            )
            for t in tag_list
        ]
        records = self._store.create_runs(self.experiment.id, new)
        children = []
        for record in records:
            child = type(self)._from_record(self.experiment, record)
            child._parent = self
            _process.track(child)
            children.append(child)
        return children

    def get_children(
        self,
        recursive: bool = False,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        type: str | None = None,
        status: str | None = None,
        _rehydrate_runs: bool = True,
        *,
        filter: str | None = None,
    ) -> Iterator[Run]:
        """Children, newest first; ``recursive=True`` walks the whole subtree. ``filter``
        takes the studio's filter text (see ``Experiment.get_runs``)."""
        from .run_filter import parse_run_filter

        query = RunQuery(
            parent_id=None if recursive else self.id,
            root_id=self.id if recursive else None,
            type=type,
            status=check_status(status),
            tags=filter_dict(tags, "tags"),
            properties=filter_dict(properties, "properties"),
            conditions=parse_run_filter(filter),
        )
        _liveness.expire_silent_runs(self._store, self._artifacts)
        for record in iter_runs(self._store, query):
            child = self.__class__._from_record(self.experiment, record)
            if record.parent_id == self.id:
                child._parent = self
            yield child

    # -- context ---------------------------------------------------------------------------
    @classmethod
    def get_context(cls, allow_offline: bool = True, **kwargs: Any) -> Any:
        """The run this process was started for, or an offline run that only prints.

        Inside a submitted run (``RUNYARD_RUN_ID`` and ``RUNYARD_URI`` set) this is that
        run, the same object on every call. Outside one it is an ``OfflineRun``, unless
        ``allow_offline=False``, which raises RunEnvironmentError.
        """
        run_id = os.environ.get(ENV_RUN_ID)
        if run_id and os.environ.get("RUNYARD_URI"):
            check_run_id(run_id, f"{ENV_RUN_ID} in the environment")
            singleton = cls._context_singleton
            if singleton is None or singleton.id != run_id:
                from .workspace import Workspace

                workspace = Workspace.from_config(_create=False)  # never make one up
                singleton = workspace.get_run(run_id)
                singleton._system_managed = True
                outputs = os.environ.get("RUNYARD_OUTPUT_DIRECTORY")
                if outputs:
                    singleton._outputs_dir = os.path.abspath(outputs)
                cls._context_singleton = singleton
            return singleton
        if not allow_offline:
            raise RunEnvironmentError(
                "Could not load a submitted run: this process was not started by runyard "
                f"({ENV_RUN_ID} is not set). Outside a submitted run, use "
                "experiment.start_logging() to create a Run."
            )
        from ._offline import OfflineRun

        return OfflineRun._context()

    def _buffer(self) -> MetricBuffer:
        if self._buffer_obj is None:
            _process.install()  # so SIGTERM and uncaught exceptions flush what is buffered
            self._buffer_obj = MetricBuffer(self._store, self.id, self)
        return self._buffer_obj


USER_LOG = "logs/user_log.txt"
_LOG_PREFIXES = ("logs/", "user_logs/", "system_logs/", "azureml-logs/")


def user_name() -> str | None:
    """Who submits, from the environment or the password database (whose bytes need not be
    UTF-8: an undecodable byte becomes U+FFFD rather than a lone surrogate no store takes)."""
    try:
        import getpass

        name = getpass.getuser()
    except Exception:
        return None
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _check_text(value: object, what: str, limit: int) -> None:
    if value is not None:
        check_text(value, what, limit)


def _error_body(details: str | BaseException | None, code: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code or "UserError"}
    if details is None:
        error["message"] = "The run was marked as failed."
    elif isinstance(details, str):
        error["message"] = details
    elif isinstance(details, BaseException):
        error["message"] = f"User program failed with {type(details).__name__}: {details}"
        error["debugInfo"] = {
            "type": type(details).__name__,
            "message": str(details),
            "stackTrace": "".join(traceback.format_exception(details)),
        }
    else:
        raise TypeError("error_details must be instance of string or BaseException.")
    return {"error": error, "time": format_time(time.time())}
