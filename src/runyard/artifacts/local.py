"""Artifacts in a local (or network-mounted) directory."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import BinaryIO

from .. import _owners
from .._folders import make_folder
from .._validation import check_artifact_path, check_run_id, check_snapshot_id
from ..errors import NotFound, UserError

_CHUNK = 1 << 20


class LocalArtifactStore:
    """Files under ``<root>/runs/<run id>/<path>``; snapshots under ``<root>/snapshots``.

    Run ids, paths and snapshot ids are validated again here, before any filesystem call,
    so a bad one can never reach outside its run's folder.
    """

    def __init__(self, root: str) -> None:
        if "\x00" in os.fspath(root):
            raise UserError(f"artifact folder {root!r} contains a NUL character; remove it")
        self.root = os.path.abspath(root)
        self._staging = os.path.join(self.root, ".staging")
        make_folder(self._staging, "artifact")
        _owners.sweep(self._staging)  # staged files of processes killed while uploading

    def _run_file(self, run_id: str, path: str) -> str:
        """Where ``path`` of ``run_id`` lives; both are checked again, whoever validated them."""
        folder = os.path.join(self.root, "runs", check_run_id(run_id))
        target = os.path.join(folder, *check_artifact_path(path).split("/"))
        if os.path.commonpath([target, folder]) != folder or target == folder:
            raise UserError(f"artifact path {path!r} escapes its run's folder")
        return target

    def _snapshot_file(self, snapshot_id: str) -> str:
        return os.path.join(self.root, "snapshots", f"{check_snapshot_id(snapshot_id)}.zip")

    def stage(
        self, source: BinaryIO, run_id: str | None = None, path: str | None = None
    ) -> tuple[str, int, str]:
        return copy_to_file(source, self._staging, _owners.owned_prefix())

    def commit(self, staged: str, run_id: str, path: str, streaming: bool = False) -> None:
        target = self._run_file(run_id, path)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(staged, target)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            self._clear_way(run_id, target)  # unrecorded leftovers (see ArtifactStore.commit)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(staged, target)

    def remove(self, run_id: str, path: str) -> None:
        """Delete the bytes of ``path`` (whose record could not be stored)."""
        try:
            os.unlink(self._run_file(run_id, path))
        except FileNotFoundError:
            pass

    def _clear_way(self, run_id: str, target: str) -> None:
        """Remove a file standing where a folder of ``target`` must be, and a folder at
        ``target`` itself."""
        folder = os.path.join(self.root, "runs", check_run_id(run_id))
        parent = os.path.dirname(target)
        while parent != folder:  # the nearest file standing where a folder must be
            if os.path.isfile(parent) or os.path.islink(parent):
                os.unlink(parent)
                break
            parent = os.path.dirname(parent)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)

    def discard(self, staged: str) -> None:
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass

    def local_path(self, run_id: str, path: str) -> str | None:
        return self._run_file(run_id, path)

    def measure(self, run_id: str, path: str) -> tuple[int, str] | None:
        local = self._run_file(run_id, path)
        if not os.path.isfile(local):
            return None
        digest = hashlib.sha256()
        with open(local, "rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
            return fh.tell(), digest.hexdigest()

    def url(self, run_id: str, path: str) -> str:
        return "file://" + self._run_file(run_id, path)

    def open_append(self, run_id: str, path: str) -> BinaryIO:
        """A log file that grows while a run goes; readers see each flushed write."""
        target = self._run_file(run_id, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return open(target, "ab")

    def open(self, run_id: str, path: str) -> BinaryIO:
        try:
            return open(self._run_file(run_id, path), "rb")
        except FileNotFoundError:
            raise NotFound(
                f"the bytes of {path!r} of run {run_id} are missing from {self.root}"
            ) from None

    def put_snapshot(self, snapshot_id: str, staged: str) -> None:
        target = self._snapshot_file(snapshot_id)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):
            self.discard(staged)
        else:
            os.replace(staged, target)

    def open_snapshot(self, snapshot_id: str) -> BinaryIO:
        try:
            return open(self._snapshot_file(snapshot_id), "rb")
        except FileNotFoundError:
            raise NotFound(f"snapshot {snapshot_id!r} is not in {self.root}") from None


def copy_to_file(
    source: BinaryIO, folder: str, prefix: str, suffix: str = ""
) -> tuple[str, int, str]:
    """Copy ``source`` into a new file in ``folder``; return (its path, size, sha256 hex).
    Nothing is left behind if the copy fails."""
    digest = hashlib.sha256()
    size = 0
    fd, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            while block := source.read(_CHUNK):
                digest.update(block)
                size += len(block)
                out.write(block)
    except BaseException:
        os.unlink(path)
        raise
    return path, size, digest.hexdigest()
