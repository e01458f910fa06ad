"""Artifacts of a remote workspace: the bytes travel to and from a runyard server.

One upload request (``PUT /api/v1/runs/{id}/files/{path}``) stores the bytes and their
record together on the server, which checks them against the client's SHA-256: so
``commit`` is the whole upload, ``RestStore.add_artifact(record, place)`` only calls
``place()``, and ``remove`` has nothing to undo. Downloads are streamed (resumed with a
``Range`` after a broken connection); growing logs are appended in pieces by a background
sender that survives a server that is away for a while.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import httpx

from .. import _owners
from .._terminal import say
from ..errors import Conflict, RunyardError, ServerUnreachable, StoreError
from ..store._http import API, HttpClient
from .local import copy_to_file

_CHUNK = 1 << 20
_OCTETS = "application/octet-stream"


def _q(part: str) -> str:
    return quote(part, safe="")


def _path(path: str) -> str:
    return "/".join(_q(part) for part in path.split("/"))


class RemoteArtifactStore:
    """The ArtifactStore of a workspace on a runyard server (``root`` is its URL)."""

    def __init__(self, http: HttpClient) -> None:
        self.http = http
        self.root = http.base_url
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    def _file(self, run_id: str, path: str) -> str:
        return f"{API}/runs/{_q(run_id)}/files/{_path(path)}"

    # -- uploads ------------------------------------------------------------------------
    def stage(
        self, source: BinaryIO, run_id: str | None = None, path: str | None = None
    ) -> tuple[str, int, str]:
        """Copy ``source`` into this process's scratch folder (swept if the process dies)."""
        staged, size, digest = copy_to_file(source, _owners.process_folder(), "upload-")
        with self._lock:
            self._digests[staged] = digest
        return staged, size, digest

    def _digest_of(self, staged: str) -> str:
        with self._lock:
            known = self._digests.get(staged)
        if known is not None:
            return known
        digest = hashlib.sha256()
        with open(staged, "rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
        return digest.hexdigest()

    def commit(self, staged: str, run_id: str, path: str, streaming: bool = False) -> None:
        """Upload the staged file: the server stores bytes and record in this one request.

        The file is sent again from its start when the connection fails; if an earlier
        attempt was stored after all, the Conflict of the next one is recognised by the
        stored digest and is no error.
        """
        digest = self._digest_of(staged)
        headers = {"Content-Type": _OCTETS, "X-Content-SHA256": digest}
        if streaming:
            headers["X-Runyard-Streaming"] = "1"
        with _Upload(staged) as body:
            try:
                self.http.request("PUT", self._file(run_id, path), content=body, headers=headers)
            except Conflict:
                if body.sends < 2 or not self._stored_as(run_id, path, digest):
                    raise
        self.discard(staged)

    def _stored_as(self, run_id: str, path: str, digest: str) -> bool:
        try:
            found = self.http.json("GET", f"{API}/runs/{_q(run_id)}/artifacts/{_path(path)}")
        except RunyardError:
            return False
        return bool(found.get("digest") == digest)

    def discard(self, staged: str) -> None:
        with self._lock:
            self._digests.pop(staged, None)
        try:
            os.unlink(staged)
        except FileNotFoundError:
            pass

    def remove(self, run_id: str, path: str) -> None:
        """Nothing to do: the server stores an upload's bytes with its record, in one
        transaction, so no bytes are ever left there without a record."""

    # -- downloads ----------------------------------------------------------------------
    def open(self, run_id: str, path: str) -> BinaryIO:
        """The artifact's bytes as a stream read from the server as they are consumed."""
        return _open_download(self.http, self._file(run_id, path))

    def local_path(self, run_id: str, path: str) -> str | None:
        return None

    def measure(self, run_id: str, path: str) -> tuple[int, str] | None:
        """None: the server records a log from its own copy when the log is closed."""
        return None

    def url(self, run_id: str, path: str) -> str:
        return self.http.base_url + self._file(run_id, path)

    # -- growing logs -------------------------------------------------------------------
    def open_append(self, run_id: str, path: str) -> BinaryIO:
        """A writer appending to the server's copy of a log (see :class:`RemoteLog`)."""
        return cast(BinaryIO, RemoteLog(self.http, f"{API}/runs/{_q(run_id)}/logs/{_path(path)}"))

    # -- snapshots ----------------------------------------------------------------------
    def put_snapshot(self, snapshot_id: str, staged: str) -> None:
        """Upload a snapshot zip; the server checks that its content is ``snapshot_id``
        and records the snapshot (``RestStore.add_snapshot`` only confirms it)."""
        with _Upload(staged) as body:
            self.http.request(
                "PUT",
                f"{API}/snapshots/{_q(snapshot_id)}",
                content=body,
                headers={"Content-Type": "application/zip"},
            )
        self.discard(staged)

    def open_snapshot(self, snapshot_id: str) -> BinaryIO:
        return _open_download(self.http, f"{API}/snapshots/{_q(snapshot_id)}")


class _Upload(io.FileIO):
    """A staged file as a request body; ``sends`` counts the attempts (each one rewinds)."""

    sends = 0

    def __init__(self, path: str) -> None:
        super().__init__(path, "rb")

    def seek(self, pos: int, whence: int = 0) -> int:
        if pos == 0 and whence == 0:
            self.sends += 1
        return super().seek(pos, whence)


# -- downloads -------------------------------------------------------------------------
def _open_download(http: HttpClient, url: str) -> BinaryIO:
    return cast(BinaryIO, io.BufferedReader(_Download(http, url), _CHUNK))


class _Download(io.RawIOBase):
    """The body of a streamed GET as a raw binary stream; a connection broken off midway
    is resumed from where it stopped (``Range``), a few times."""

    RESUMES = 3

    def __init__(self, http: HttpClient, url: str) -> None:
        self._http = http
        self._url = url
        self._pos = 0
        self._resumed = 0
        self._pending = b""
        self._stack = contextlib.ExitStack()
        self._chunks = self._start(0)  # a missing file or run raises here, at open

    def _start(self, start: int) -> Any:
        headers = {"Range": f"bytes={start}-"} if start else {}
        response = self._stack.enter_context(self._http.stream("GET", self._url, headers=headers))
        if start and response.status_code != 206:
            raise ServerUnreachable(
                f"the download of {self._url} broke off at byte {start} and cannot be resumed"
            )
        return response.iter_raw(_CHUNK)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
            except httpx.TransportError as exc:
                self._stack.close()
                self._resumed += 1
                if self._resumed > self.RESUMES:
                    raise ServerUnreachable(
                        f"the download of {self._url} broke off at byte {self._pos}: {exc}"
                    ) from exc
                self._stack = contextlib.ExitStack()
                self._chunks = self._start(self._pos)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._stack.close()
        super().close()


# -- growing logs ----------------------------------------------------------------------
_SIZE = re.compile(r"ends at byte (\d+)")


class RemoteLog(io.BufferedIOBase):
    """A log on the server that grows as the run writes: ``write`` only buffers; a
    background sender appends the buffer at least every ``FLUSH_SECONDS`` or
    ``FLUSH_BYTES``, in pieces of at most ``PIECE`` bytes, each with the offset where
    the client believes the server's copy ends (a retried piece is never doubled).

    While the server cannot be reached, the sender keeps trying; bytes wait in memory up to
    ``MAX_BUFFER``, and what comes beyond is dropped with a note in the log. A refused log
    (its run is gone, the token may not write it) is said once on the terminal. Nothing
    here raises into the script's output: ``write`` always answers at once.
    ``close`` sends what is left (waiting for the server up to the client's retry time)
    and records the log with its final size and digest.
    """

    FLUSH_SECONDS = 0.5
    FLUSH_BYTES = 256 * 1024
    PIECE = 1 << 20
    MAX_BUFFER = 32 << 20

    def __init__(self, http: HttpClient, url: str) -> None:
        super().__init__()
        self._http = http
        self._url = url
        self._cond = threading.Condition()
        self._buffer = bytearray()  # bytes from self._offset on, not yet on the server
        self._offset: int | None = None  # where the server's copy ends, once asked
        self._dropped = 0
        self._urgent = False
        self._closing = False
        self._refused: str | None = None
        self._sender = threading.Thread(target=self._send_loop, name="runyard-log", daemon=True)
        self._sender.start()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        with self._cond:
            if self._closing:
                raise ValueError("write to a closed log")
            if self._refused is not None:
                return size
            if len(self._buffer) + size > self.MAX_BUFFER:
                self._dropped += size
                return size
            self._note_dropped()
            was_empty = not self._buffer
            self._buffer += data
            if was_empty or len(self._buffer) >= self.FLUSH_BYTES:
                self._cond.notify_all()  # the sender starts its clock, or sends now
        return size

    def flush(self) -> None:
        """Ask the sender to send now (it does not wait for the server)."""
        with self._cond:
            if self._buffer:
                self._urgent = True
                self._cond.notify_all()

    def _send_loop(self) -> None:
        pause = 0.0
        while True:
            with self._cond:
                if pause:
                    self._cond.wait(pause)
                while (
                    not self._closing
                    and not self._urgent
                    and (len(self._buffer) < self.FLUSH_BYTES)
                ):
                    if not self._cond.wait(self.FLUSH_SECONDS if self._buffer else None):
                        break  # time is up: send what is there
                self._urgent = False
                if self._refused is not None or (self._closing and not self._buffer):
                    return
                piece = bytes(self._buffer[: self.PIECE])
            pause = 0.0 if self._send(piece) else min(5.0, max(0.25, pause * 2))

    def _send(self, piece: bytes) -> bool:
        """Append ``piece`` (the buffer's head); False if the server should be tried later."""
        try:
            if self._offset is None:
                self._offset = self._post(-1, b"")
            if not piece:
                return True
            self._post(self._offset, piece)
        except Conflict as exc:
            found = _SIZE.search(str(exc))
            if found is None:
                return self._refuse(exc)
            self._resume_at(int(found.group(1)))
            return True
        except (ServerUnreachable, StoreError):
            return False
        except RunyardError as exc:
            return self._refuse(exc)
        except Exception as exc:
            return self._refuse(exc)
        with self._cond:
            del self._buffer[: len(piece)]
            self._offset += len(piece)
            self._note_dropped()
        return True

    def _note_dropped(self) -> None:
        """Put the note of dropped bytes in the log, once there is room (lock held)."""
        if self._dropped and len(self._buffer) < self.MAX_BUFFER:
            self._buffer += _lost(self._dropped, "dropped while the server was away")
            self._dropped = 0

    def _post(self, offset: int, piece: bytes, final: bool = False, wait: float = 0) -> int:
        params: dict[str, Any] = {"offset": offset}
        if final:
            params["final"] = "true"
        answer = self._http.json(
            "POST",
            self._url,
            params=params,
            content=piece,
            headers={"Content-Type": _OCTETS},
            retry_seconds=wait,
        )
        return int(answer["size"])

    def _resume_at(self, size: int) -> None:
        """The server's copy ends at ``size``, before the client's offset: bytes it had were
        lost there. Continue at its end, with a note of the gap."""
        with self._cond:
            assert self._offset is not None
            if size < self._offset:
                self._buffer[:0] = _lost(self._offset - size, "lost on the server")
            self._offset = size

    def _refuse(self, exc: BaseException) -> bool:
        with self._cond:
            self._refused = str(exc)
            self._buffer.clear()
        say(f"runyard: output is no longer copied into the run's log {self._url}: {exc}")
        return True

    def close(self) -> None:
        """Send what is left, then record the log (its final size and digest)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            if self._dropped:
                self._buffer += _lost(self._dropped, "dropped while the server was away")
                self._dropped = 0
            self._cond.notify_all()
        self._sender.join(self._http.retry_seconds + 5)
        with self._cond:
            left = len(self._buffer)
            refused = self._refused
            if self._sender.is_alive():  # the server stayed away: the sender stops
                self._refused = "closed"
                self._cond.notify_all()
        if refused is None:
            try:
                offset = -1 if left or self._offset is None else self._offset
                self._post(offset, b"", final=True, wait=self._http.retry_seconds)
            except RunyardError as exc:
                say(f"runyard: the run's log {self._url} could not be recorded: {exc}")
            if left:
                say(f"runyard: {left} bytes of the run's log {self._url} did not reach the server")
        super().close()


def _lost(count: int, why: str) -> bytes:
    return f"\n[runyard: {count} bytes of this log were {why}]\n".encode()
