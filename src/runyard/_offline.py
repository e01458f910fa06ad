"""OfflineRun: what ``Run.get_context()`` returns outside a submitted run.

It is a real :class:`~runyard.Run` kept in this process's memory (an in-memory SQLite
store; uploaded files are read where they lie and never copied), so every method takes
the same arguments and fails in the same way as on a stored run, and reads
(``get_metrics``, ``get_tags``, ``get_status``, ``download_file``…) give back what the
script recorded. Each call also prints what it would have recorded, as the original's
offline run does, so a training script runs unchanged on a laptop, in a test, or as a
submitted run. Nothing is written to disk.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from .errors import NotFound, RunEnvironmentError, UserError
from .experiment import Experiment
from .run import Run
from .workspace import Workspace

if TYPE_CHECKING:
    from .records import ArtifactRecord

OFFLINE_EXPERIMENT = "offline"
_NO_SUBMIT = (
    "an offline run (Run.get_context() outside a submitted run) cannot submit runs: submit "
    "this script with experiment.submit(ScriptRunConfig(...)) or runyard run submit-script, "
    "or start a stored run with Experiment(workspace, name).start_logging()"
)


class OfflineRun(Run):
    """A run kept in memory that prints each call; what ``Run.get_context()`` gives offline.

    >>> run = OfflineRun()
    >>> run.log("loss", 0.5, step=1)
    Attempted to log scalar metric loss:
    0.5
    >>> run.get_metrics()
    {'loss': 0.5}
    """

    _singleton: OfflineRun | None = None

    def __init__(self, run_id: str | None = None) -> None:
        made = type(self)._start(
            _offline_experiment(), parent=None,
            run_id=run_id if run_id is not None else f"OfflineRun_{uuid.uuid4()}",
            outputs=None, snapshot_directory=None, display_name=None, description=None,
            tags=None,
        )  # fmt: skip
        self.__dict__.update(made.__dict__)

    @classmethod
    def _context(cls) -> OfflineRun:
        """The offline run of this process: the same one on every ``get_context()``."""
        if cls._singleton is None:
            cls._singleton = cls()
        return cls._singleton

    @classmethod
    def _start(cls, experiment: Experiment, **kwargs: Any) -> Run:
        from . import _process

        run = super()._start(experiment, **kwargs)
        _process.untrack(run)  # nothing to finish at exit: it all lives in memory
        return run

    @property
    def _calls(self) -> threading.local:
        calls: threading.local | None = self.__dict__.get("_calls_local")
        if calls is None:
            calls = self.__dict__.setdefault("_calls_local", threading.local())
        return calls

    def __repr__(self) -> str:
        return f"OfflineRun(Id: {self.id})"

    # -- printing what would have been recorded ----------------------------------------
    @contextmanager
    def _printing(self, message: str | None) -> Iterator[None]:
        """Print ``message`` once the call inside succeeded, unless another call holds it."""
        depth = getattr(self._calls, "depth", 0)
        self._calls.depth = depth + 1
        try:
            yield
        finally:
            self._calls.depth = depth
        if depth == 0 and message is not None:
            print(message)

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        with self._printing(f"Attempted to log scalar metric {name}:\n{value}"):
            super().log(name, value, description, step)

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        with self._printing(f"Attempted to log list metric {name}:\n{value}"):
            super().log_list(name, value, description)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        with self._printing(f"Attempted to log row metric {name}:\n{kwargs}"):
            super().log_row(name, description, **kwargs)

    def log_table(self, name: str, value: dict[str, Any], description: str = "") -> None:
        with self._printing(f"Attempted to log table metric {name}:\n{value}"):
            super().log_table(name, value, description)

    def log_image(
        self, name: str, path: str | None = None, plot: Any = None, description: str = ""
    ) -> None:
        shown = path if path is not None else plot
        with self._printing(f"Attempted to log image metric {name}:\n{shown}"):
            super().log_image(name, path, plot, description)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        with self._printing(f"Attempted to log confusion_matrix metric {name}:\n{value}"):
            super().log_confusion_matrix(name, value, description)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        with self._printing(f"Attempted to log accuracy_table metric {name}:\n{value}"):
            super().log_accuracy_table(name, value, description)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        with self._printing(f"Attempted to log residual metric {name}:\n{value}"):
            super().log_residuals(name, value, description)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        with self._printing(f"Attempted to log predictions metric {name}:\n{value}"):
            super().log_predictions(name, value, description)

    def set_tags(self, tags: dict[str, Any]) -> None:
        with self._printing(f"Attempted to set tags {tags}"):
            super().set_tags(tags)

    def tag(self, key: str, value: Any = None) -> None:
        with self._printing(f"Attempted to add tag {key} with value {value}"):
            super().tag(key, value)

    def remove_tags(self, tags: list[str] | str) -> None:
        with self._printing(f"Attempted to remove tags {tags}"):
            super().remove_tags(tags)

    def add_properties(self, properties: dict[str, Any]) -> None:
        with self._printing(f"Attempted to add properties {properties}"):
            super().add_properties(properties)

    def upload_file(self, name: str, path_or_stream: Any) -> ArtifactRecord:
        with self._printing(f"Attempted to track file {name} at {path_or_stream}"):
            return super().upload_file(name, path_or_stream)

    def upload_files(
        self,
        names: list[str],
        paths: list[str],
        return_artifacts: bool = False,
        timeout_seconds: int | None = None,
    ) -> Any:
        with self._printing(f"Attempted to track files {names} at {paths}"):
            return super().upload_files(names, paths, return_artifacts, timeout_seconds)

    def upload_folder(self, name: str, path: str) -> Any:
        with self._printing(f"Attempted to track folder {name} at {path}"):
            return super().upload_folder(name, path)

    def take_snapshot(self, file_or_folder_path: str) -> str:
        with self._printing(f"Attempted to take a snapshot of {file_or_folder_path}"):
            return super().take_snapshot(file_or_folder_path)

    def flush(self, timeout_seconds: int = 300) -> None:
        with self._printing(f"Attempted to flush run with id {self.id}"):
            super().flush(timeout_seconds)

    def complete(self, _set_status: bool = True) -> None:
        with self._printing(None):
            super().complete(_set_status)

    def cancel(self) -> None:
        with self._printing(None):
            super().cancel()

    def fail(
        self,
        error_details: str | BaseException | None = None,
        error_code: str | None = None,
        _set_status: bool = True,
    ) -> None:
        with self._printing(f"Run failed with error code {error_code}:\n{error_details}"):
            super().fail(error_details, error_code, _set_status)

    # -- what an offline run does differently -------------------------------------------
    def child_run(
        self, name: str | None = None, run_id: str | None = None, outputs: str | None = None
    ) -> Run:
        """An offline child, ``<parent id>.<name>`` unless ``run_id`` is given."""
        if run_id is None and isinstance(name, str):
            try:
                return super().child_run(name, f"{self.id}.{name}", outputs)
            except UserError:
                pass  # a name that cannot be part of an id, or used twice: a uuid it is
        return super().child_run(name, run_id, outputs)

    def submit_child(self, config: Any, tags: dict[str, Any] | None = None, **kwargs: Any) -> Run:
        """Script runs need a workspace: offline this raises RunEnvironmentError."""
        raise RunEnvironmentError(_NO_SUBMIT)

    def wait_for_completion(
        self, show_output: bool = False, wait_post_processing: bool = False,
        raise_on_error: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """Return at once: nothing else can finish an offline run (a Failed one raises)."""
        if self.get_status() in ("Completed", "Failed", "Canceled"):
            return super().wait_for_completion(show_output, wait_post_processing, raise_on_error)
        return self.get_details()

    def __enter__(self) -> Run:
        print(f"[START] Run {self.id} context")
        return self  # no capture: the output stays on the console

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        with self._printing(None):
            super().__exit__(kind, exc, tb)
        print(f"[STOP] Run {self.id} context")
        return False


class _OfflineWorkspace(Workspace):
    """A workspace in memory; it holds offline runs and nothing reaches the disk."""

    def __init__(self) -> None:  # deliberately not Workspace.__init__: nothing is opened
        from .store.sql import SqlStore

        self.uri = OFFLINE_EXPERIMENT
        self.artifacts_root = ""
        self.max_concurrent_runs = 1
        self.default_experiment = OFFLINE_EXPERIMENT
        self.project_path = None
        self._store = SqlStore(_MemoryDatabase(), "offline (in memory)")
        self._artifacts = _MemoryArtifacts()

    def __repr__(self) -> str:
        return "Workspace(offline, in memory)"

    def _local_root(self) -> str:
        raise RunEnvironmentError(_NO_SUBMIT)

    def _own_folders(self) -> list[str]:
        return []

    def write_config(self, path: str | os.PathLike[str] | None = None, **extra: Any) -> str:
        raise RunEnvironmentError(
            "an offline run's workspace lives in memory and has no configuration to write; "
            "open a stored workspace with Workspace(path)"
        )


def _offline_experiment() -> Experiment:
    workspace = _OfflineWorkspace()
    return Experiment._from_record(
        workspace, workspace._store.get_or_create_experiment(OFFLINE_EXPERIMENT)
    )


def _memory_database() -> Any:
    from .store.sql.database import SqliteDatabase

    class MemoryDatabase(SqliteDatabase):
        """SQLite in memory; a forked child keeps using its copy of the memory."""

        def __init__(self) -> None:
            super().__init__(":memory:")
            self._memory: Any = None

        def _connect(self) -> Any:
            if self._memory is None:
                self._memory = super()._connect()
            return self._memory

    return MemoryDatabase()


_MemoryDatabase = _memory_database  # sqlite3 loads only when an offline run is made


class _MemoryArtifacts:
    """File contents of offline runs: a path where the file lies, or a stream's bytes."""

    root = ""

    def __init__(self) -> None:
        self._staged: dict[str, str | bytes] = {}
        self._files: dict[tuple[str, str], str | bytes | io.BytesIO] = {}

    def stage(
        self, source: BinaryIO, run_id: str | None = None, path: str | None = None
    ) -> tuple[str, int, str]:
        name = getattr(source, "name", None)
        path = os.path.abspath(name) if isinstance(name, str) and os.path.isfile(name) else None
        kept = None if path else io.BytesIO()
        digest = hashlib.sha256()
        size = 0
        while block := source.read(1 << 20):
            digest.update(block)
            size += len(block)
            if kept is not None:
                kept.write(block)
        handle = uuid.uuid4().hex
        self._staged[handle] = path if path is not None else kept.getvalue()  # type: ignore[union-attr]
        return handle, size, digest.hexdigest()

    def commit(self, staged: str, run_id: str, path: str, streaming: bool = False) -> None:
        self._files[(run_id, path)] = self._staged.pop(staged)

    def discard(self, staged: str) -> None:
        self._staged.pop(staged, None)

    def remove(self, run_id: str, path: str) -> None:
        self._files.pop((run_id, path), None)

    def open(self, run_id: str, path: str) -> BinaryIO:
        source = self._files.get((run_id, path))
        if source is None:
            raise NotFound(f"offline run {run_id} holds no file {path!r}")
        if isinstance(source, io.BytesIO):
            return io.BytesIO(source.getvalue())
        if isinstance(source, bytes):
            return io.BytesIO(source)
        try:
            return open(source, "rb")
        except OSError as exc:
            raise NotFound(
                f"{path!r} of offline run {run_id} was the file {source}, which cannot be read "
                f"now ({exc.strerror}); an offline run does not copy files"
            ) from None

    def open_append(self, run_id: str, path: str) -> BinaryIO:
        found = self._files.get((run_id, path))
        log = found if isinstance(found, io.BytesIO) else io.BytesIO()
        log.seek(0, io.SEEK_END)
        self._files[(run_id, path)] = log
        return _Unclosable(log)  # type: ignore[return-value]

    def local_path(self, run_id: str, path: str) -> str | None:
        return None

    def measure(self, run_id: str, path: str) -> tuple[int, str] | None:
        return None  # an offline log stays as recorded when its capture began

    def url(self, run_id: str, path: str) -> str:
        return ""  # an offline run's files have no address

    def put_snapshot(self, snapshot_id: str, staged: str) -> None:
        self.discard(staged)  # an offline snapshot is checked, not kept

    def open_snapshot(self, snapshot_id: str) -> BinaryIO:
        raise NotFound(f"snapshot {snapshot_id!r}: an offline run keeps no snapshots")


class _Unclosable(io.BufferedIOBase):
    """A view of an in-memory log whose ``close()`` keeps the bytes."""

    def __init__(self, target: io.BytesIO) -> None:
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._target.write(data)
