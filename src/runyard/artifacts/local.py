"""Artifacts in a local (or network-mounted) directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import BinaryIO

from .. import _owners
from ..errors import NotFound

_CHUNK = 1 << 20


class LocalArtifactStore:
    """Files under ``<root>/runs/<run id>/<path>``; snapshots under ``<root>/snapshots``.

    Paths reaching this class were validated by the SDK; ``_place`` checks again that the
    result stays inside the root, so a bad path can never escape it.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._staging = os.path.join(self.root, ".staging")
        os.makedirs(self._staging, exist_ok=True)
        _owners.sweep(self._staging)  # staged files of processes killed while uploading

    def _place(self, *parts: str) -> str:
        target = os.path.abspath(os.path.join(self.root, *parts))
        if os.path.commonpath([target, self.root]) != self.root:
            raise ValueError(f"artifact path escapes the artifact root: {parts!r}")
        return target

    def stage(self, source: BinaryIO) -> tuple[str, int, str]:
        digest = hashlib.sha256()
        size = 0
        fd, staged = tempfile.mkstemp(dir=self._staging, prefix=_owners.owned_prefix())
        try:
            with os.fdopen(fd, "wb") as out:
                while block := source.read(_CHUNK):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        except BaseException:
            os.unlink(staged)
            raise
        return staged, size, digest.hexdigest()

    def commit(self, staged: str, run_id: str, path: str) -> None:
        target = self._place("runs", run_id, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(staged, target)

    def discard(self, staged: str) -> None:
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass

    def local_path(self, run_id: str, path: str) -> str | None:
        return self._place("runs", run_id, path)

    def open_append(self, run_id: str, path: str) -> BinaryIO:
        """A log file that grows while a run goes; readers see each flushed write."""
        target = self._place("runs", run_id, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        return open(target, "ab")

    def open(self, run_id: str, path: str) -> BinaryIO:
        try:
            return open(self._place("runs", run_id, path), "rb")
        except FileNotFoundError:
            raise NotFound(
                f"the bytes of {path!r} of run {run_id} are missing from {self.root}"
            ) from None

    def put_snapshot(self, snapshot_id: str, staged: str) -> None:
        target = self._place("snapshots", f"{snapshot_id}.zip")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):
            self.discard(staged)
        else:
            os.replace(staged, target)

    def open_snapshot(self, snapshot_id: str) -> BinaryIO:
        try:
            return open(self._place("snapshots", f"{snapshot_id}.zip"), "rb")
        except FileNotFoundError:
            raise NotFound(f"snapshot {snapshot_id!r} is not in {self.root}") from None
