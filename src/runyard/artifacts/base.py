"""The seam for artifact bytes: files of runs and snapshot archives."""

from __future__ import annotations

from typing import BinaryIO, Protocol


class ArtifactStore(Protocol):
    """Where the bytes of run files and snapshots live; records live in the Store."""

    root: str

    def stage(
        self, source: BinaryIO, run_id: str | None = None, path: str | None = None
    ) -> tuple[str, int, str]:
        """Copy ``source`` into a staging file; return (staging handle, size, sha256).

        ``run_id`` and ``path``, when known, say where ``commit`` will put it: a bucket then
        sends a large file straight to its place, where it is seen only once committed.
        """
        ...

    def commit(self, staged: str, run_id: str, path: str, streaming: bool = False) -> None:
        """Move a staged file to its place as ``path`` of ``run_id``.

        ``streaming``: the file is a log that may be replaced later (a remote store's
        upload says so to the server, which stores the record with the bytes).

        Called inside the record's transaction, after the store checked that no record
        names ``path`` or a file or folder in its way: what stands there is leftovers (the
        bytes of an upload killed before its record was stored) and gives way.
        """
        ...

    def discard(self, staged: str) -> None: ...

    def remove(self, run_id: str, path: str) -> None:
        """Delete committed bytes whose record could not be stored."""
        ...

    def open(self, run_id: str, path: str) -> BinaryIO: ...

    def open_append(self, run_id: str, path: str) -> BinaryIO:
        """A log file that grows while a run goes (streaming artifacts only)."""
        ...

    def measure(self, run_id: str, path: str) -> tuple[int, str] | None:
        """(size, sha256 hex) of a log written in place with ``open_append``, to record it;
        None if there is no such log, or if the store records its logs itself (a server's).
        """
        ...

    def local_path(self, run_id: str, path: str) -> str | None:
        """A filesystem path to read the artifact in place, if this store has one."""
        ...

    def url(self, run_id: str, path: str) -> str:
        """Where a person or a tool reads the artifact: a file:// or an http(s) URL."""
        ...

    def put_snapshot(self, snapshot_id: str, staged: str) -> None: ...

    def open_snapshot(self, snapshot_id: str) -> BinaryIO: ...
