"""The file half of Run: uploads, downloads, outputs collection, snapshots."""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from ._validation import check_artifact_path
from .errors import Conflict, NotFound, RunyardError, StoreError, UserError
from .records import ArtifactRecord

if TYPE_CHECKING:
    from .artifacts.base import ArtifactStore
    from .records import RunRecord
    from .store.base import Store


class FilesMixin:
    """File methods of :class:`runyard.Run`."""

    if TYPE_CHECKING:

        @property
        def id(self) -> str: ...

    _store: Store
    _artifacts: ArtifactStore
    _outputs_dir: str | None
    _synced: dict[str, tuple[int, int]]
    _record: RunRecord

    def _put(self, name: str, source: BinaryIO, streaming: bool = False) -> ArtifactRecord:
        return store_artifact(self._store, self._artifacts, self.id, name, source, streaming)

    def upload_file(self, name: str, path_or_stream: Any) -> ArtifactRecord:
        """Store a file (a path or a binary stream) as ``name``; names are write-once.

        >>> run.upload_file("outputs/model.pkl", "model.pkl")   # doctest: +SKIP
        """
        name = check_artifact_path(name)
        if isinstance(path_or_stream, (str, os.PathLike)):
            path = os.fspath(path_or_stream)
            if not os.path.isfile(path):
                raise UserError(
                    f"cannot upload {path!r}: no such file"
                    + (" (it is a folder: use upload_folder)" if os.path.isdir(path) else "")
                )
            self._require_new(name)
            with open(path, "rb") as fh:
                return self._put(name, fh)
        if isinstance(path_or_stream, io.IOBase) or hasattr(path_or_stream, "read"):
            self._require_new(name)
            stream = path_or_stream
            if isinstance(stream, io.TextIOBase):
                stream = io.BytesIO(stream.read().encode())
            return self._put(name, stream)
        raise UserError(
            f"UnsupportedType: upload_file takes a file path or a binary stream, "
            f"not {type(path_or_stream).__name__}"
        )

    def _require_new(self, name: str) -> None:
        try:
            self._store.get_artifact(self.id, name)
        except NotFound:
            return
        raise Conflict(
            f"artifact {name!r} already exists in run {self.id}; artifacts are write-once: "
            "upload under another name"
        )

    def upload_files(
        self,
        names: list[str],
        paths: list[str],
        return_artifacts: bool = False,
        timeout_seconds: int | None = None,
    ) -> Any:
        """Upload several files; every name and path is checked before anything is stored."""
        if not isinstance(names, list | tuple) or not isinstance(paths, list | tuple):
            raise UserError("names and paths must be lists of equal lengths")
        if len(names) != len(paths):
            raise UserError(
                f"names and paths must be lists of equal lengths ({len(names)} names, "
                f"{len(paths)} paths)"
            )
        chosen: dict[str, str] = {}
        for name, path in zip(names, paths, strict=True):
            clean = check_artifact_path(name)
            if clean in chosen:
                warnings.warn(f"{clean!r} given twice; keeping the first", stacklevel=2)
                continue
            if not os.path.isfile(path):
                raise UserError(f"cannot upload {path!r}: no such file")
            chosen[clean] = os.fspath(path)
        existing = {a.path for a in self._store.list_artifacts(self.id)}
        taken = sorted(existing & chosen.keys())
        if taken:
            raise Conflict(
                f"artifacts {taken} already exist in run {self.id}; artifacts are write-once"
            )
        records = [self.upload_file(name, path) for name, path in chosen.items()]
        if return_artifacts:
            return iter(records), {r.path: r for r in records}
        return iter(records)

    def upload_folder(self, name: str, path: str) -> Any:
        """Upload every file under ``path`` as ``name/<relative path>``."""
        if not os.path.isdir(path):
            raise UserError(f"Cannot upload path: {path} since it is not a valid directory.")
        prefix = check_artifact_path(name.rstrip("/") + "/x")[:-1] if name.strip("/") else ""
        names, paths = [], []
        for rel, full in _walk(path):
            names.append(prefix + rel)
            paths.append(full)
        return self.upload_files(names, paths)

    def get_file_names(self) -> list[str]:
        """Every artifact path of this run, sorted."""
        return [a.path for a in self._store.list_artifacts(self.id)]

    def download_file(self, name: str, output_file_path: str | None = None) -> None:
        """Write the artifact ``name`` to ``output_file_path`` (default: its base name here)."""
        name = check_artifact_path(name)
        self._store.get_artifact(self.id, name)
        target = output_file_path or os.path.basename(name)
        if os.path.isdir(target):
            target = os.path.join(target, os.path.basename(name))
        _copy_out(self._artifacts, self.id, name, target)

    def download_files(
        self,
        prefix: str | None = None,
        output_directory: str | None = None,
        output_paths: list[str] | None = None,
        batch_size: int = 100,
        append_prefix: bool = True,
        timeout_seconds: int | None = None,
    ) -> list[str]:
        """Download every artifact under ``prefix`` (a folder) into ``output_directory``."""
        if prefix:
            check_artifact_path(prefix.rstrip("/") + "/x")
        records = self._store.list_artifacts(self.id, prefix)
        if output_paths is not None and len(output_paths) != len(records):
            raise UserError(
                f"output_paths has {len(output_paths)} entries for {len(records)} files"
            )
        base = os.path.abspath(output_directory or os.getcwd())
        written = []
        strip = prefix.rstrip("/") + "/" if prefix and not append_prefix else ""
        for i, record in enumerate(records):
            if output_paths is not None:
                target = output_paths[i]
            else:
                rel = record.path[len(strip) :] if strip else record.path
                target = os.path.join(base, *rel.split("/"))
            _copy_out(self._artifacts, self.id, record.path, target)
            written.append(target)
        return written

    # -- outputs, logs, snapshots ----------------------------------------------------
    def _record_streaming(self, name: str) -> None:
        """Record a log written in place (a streaming artifact) with its final size and digest."""
        try:
            found = self._artifacts.measure(self.id, name)
        except OSError as exc:
            raise _os_error(exc, f"cannot record {name!r} of run {self.id}") from exc
        if found is None:
            return
        size, digest = found
        self._store.add_artifact(ArtifactRecord(self.id, name, size, digest, time.time(), True))

    def _collect_outputs(self) -> None:
        """Store every file of ``./outputs``; raise StoreError if any could not be stored."""
        if not self._outputs_dir or not os.path.isdir(self._outputs_dir):
            return
        stored = {a.path: a.digest for a in self._store.list_artifacts(self.id, "outputs")}
        missed: list[str] = []
        for rel, full in _walk(self._outputs_dir):
            name = "outputs/" + rel
            if os.path.basename(rel) == "azureml.log":
                continue
            if name in stored:
                continue  # uploaded by the script already: the earlier upload stands
            try:
                with open(full, "rb") as fh:
                    self._put(name, fh)
            except (Conflict, FileNotFoundError):  # stored already, or deleted meanwhile
                continue
            except (OSError, RunyardError) as exc:
                missed.append(f"{name} ({exc})")
        if missed:
            raise _not_stored(missed, self._outputs_dir, self.id)

    def _sync_folder(self, folder: str, prefix: str) -> None:
        """Upload a watched folder (``./logs``): the files that changed since the last sync.

        These files may be replaced while the run goes.
        """
        if not os.path.isdir(folder):
            return
        missed: list[str] = []
        for rel, full in _walk(folder):
            name = f"{prefix}/{rel}"
            try:
                info = os.stat(full)
            except OSError:
                continue
            stamp = (info.st_size, info.st_mtime_ns)
            if self._synced.get(name) == stamp:
                continue
            try:
                with open(full, "rb") as fh:
                    self._put(name, fh, streaming=True)
            except Conflict:
                warnings.warn(f"{name} was uploaded as a regular file; kept", stacklevel=2)
            except FileNotFoundError:  # removed (or rotated away) since the folder was read
                continue
            except (OSError, RunyardError) as exc:
                missed.append(f"{name} ({exc})")
                continue
            self._synced[name] = stamp
        if missed:
            raise _not_stored(missed, folder, self.id)

    def take_snapshot(self, file_or_folder_path: str) -> str:
        """Snapshot a folder for a run that has none yet; return the snapshot id."""
        from ._snapshot import take_snapshot

        if self.get_snapshot_id():
            raise UserError(f"run {self.id} already has snapshot {self.get_snapshot_id()}")
        snapshot_id = take_snapshot(os.fspath(file_or_folder_path), self._store, self._artifacts)
        self._store.add_properties(self.id, {"ContentSnapshotId": snapshot_id})
        self._store.update_run(self.id, snapshot_id=snapshot_id)
        self._record = self._store.get_run(self.id)
        return snapshot_id

    def get_snapshot_id(self) -> str | None:
        return self._record.properties.get("ContentSnapshotId")

    def restore_snapshot(self, snapshot_id: str | None = None, path: str | None = None) -> str:
        """Write the snapshot zip to ``<path or a temp dir>/<id>.zip``; return its path."""
        snapshot_id = snapshot_id or self.get_snapshot_id()
        if not snapshot_id:
            raise UserError(f"run {self.id} has no snapshot; start it with a snapshot_directory")
        folder = os.path.abspath(path or tempfile.mkdtemp(prefix="runyard-snapshot-"))
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, f"{snapshot_id}.zip")
        with self._artifacts.open_snapshot(snapshot_id) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        return target


class _Removed(RunyardError):
    """Rolls back the claim of ``_remove_unrecorded`` once the bytes are gone."""


def _walk(folder: str) -> Iterator[tuple[str, str]]:
    """(relative posix path, full path) of every regular file under ``folder``, sorted."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for fname in sorted(files):
            full = os.path.join(root, fname)
            if os.path.isfile(full):
                yield os.path.relpath(full, folder).replace(os.sep, "/"), full


def _copy_out(artifacts: ArtifactStore, run_id: str, name: str, target: str) -> None:
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    with artifacts.open(run_id, name) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)


def _not_stored(missed: list[str], folder: str, run_id: str) -> StoreError:
    """One error naming the files of ``folder`` that could not be stored (the first five)."""
    return StoreError(
        f"{len(missed)} file(s) of {folder} could not be stored in run {run_id}: "
        + "; ".join(missed[:5])
        + (" ..." if len(missed) > 5 else "")
    )


def _os_error(exc: OSError, what: str) -> RunyardError:
    """One clear error for a filesystem failure while storing an artifact."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        return Conflict(
            f"{what}: a file and a folder of the run would share a name ({reason}); "
            "upload under another name"
        )
    if exc.errno == errno.ENAMETOOLONG:
        return UserError(f"{what}: the name is too long for the filesystem ({reason})")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"{what}: the disk holding the artifacts is full ({reason})")
    return StoreError(f"{what}: {reason} ({exc.filename or 'the artifact folder'})")


def store_artifact(
    store: Store,
    artifacts: ArtifactStore,
    run_id: str,
    name: str,
    source: BinaryIO,
    streaming: bool = False,
) -> ArtifactRecord:
    """Store bytes and record together: a failure at any step leaves neither."""
    what = f"cannot store {name!r} of run {run_id}"
    try:
        staged, size, digest = artifacts.stage(source, run_id, name)
    except OSError as exc:
        raise _os_error(exc, what) from exc
    record = ArtifactRecord(run_id, name, size, digest, time.time(), streaming)
    placed = False

    def place() -> None:  # inside the record's transaction, which may run again
        nonlocal placed
        if placed:
            return
        try:
            artifacts.commit(staged, run_id, name, streaming)
        except OSError as exc:
            raise _os_error(exc, what) from exc
        placed = True

    try:
        store.add_artifact(record, place)
    except BaseException:
        if not placed:
            artifacts.discard(staged)
        elif not streaming:  # the record was not stored: neither are the bytes
            _remove_unrecorded(store, artifacts, record)
        raise
    return record


def _remove_unrecorded(store: Store, artifacts: ArtifactStore, record: ArtifactRecord) -> None:
    """Remove the bytes at ``record.path`` whose record could not be stored, unless the
    name was taken meanwhile (another writer's bytes are there now, with its record).

    The name is claimed in a transaction that never commits: no other writer can take it
    while the bytes go. If the store cannot be reached the bytes stay, unlisted, until the
    next upload of the name replaces them.
    """

    def remove() -> None:
        artifacts.remove(record.run_id, record.path)
        raise _Removed()

    try:
        store.add_artifact(record, remove)
    except RunyardError:  # removed; or taken by another writer (Conflict); or unreachable
        pass
