"""/api/v1 file routes: artifact bytes up and down (streamed, ranges), growing logs, snapshots.

Every run id, artifact path and snapshot id of a request is checked before any filesystem
call (``check_run_id``, ``check_artifact_path``, ``check_snapshot_id``; the raw request
path must also be valid UTF-8 once percent-decoded). The server opens only paths it builds
itself below its artifact root: never a path or URI a client supplied.

Bodies are streamed into the artifact store's staging area by a worker thread, through a
small bounded queue: an upload never sits whole in memory, and nothing is stored before
the body arrived whole and its digest matched.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Annotated, Any, BinaryIO
from urllib.parse import unquote_to_bytes

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response, StreamingResponse

from ... import _owners
from ..._events import blocks
from ..._run_files import _os_error, store_artifact
from ..._snapshot import MAX_BYTES, MAX_FILES, zip_content_id
from ..._validation import check_artifact_path, check_run_id, check_snapshot_id
from ...artifacts.local import copy_to_file
from ...errors import Conflict, NotFound, UserError
from ...records import ArtifactRecord
from ..auth import Principal, contributor, reader, require_run
from .schemas import Artifact, Snapshot, plain

router = APIRouter(tags=["files"])
Reader = Annotated[Principal, Depends(reader)]
Contributor = Annotated[Principal, Depends(contributor)]

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_BYTES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the bytes"}
}
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_QUEUED_CHUNKS = 8  # body chunks between the network and the staging thread


class LogSize(BaseModel):
    """Where a growing log ends on the server, in bytes."""

    size: int


# -- checks ----------------------------------------------------------------------------
def _raw_path_ok(request: Request) -> None:
    """Refuse a request path (or query) whose percent escapes do not decode to UTF-8 (a
    lone surrogate, a stray byte): the server would see U+FFFD instead of what was meant."""
    raw = request.scope.get("raw_path") or request.scope.get("path", "").encode()
    try:
        unquote_to_bytes(raw).decode("utf-8")
        unquote_to_bytes(request.scope.get("query_string", b"")).decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(
            "the request path is not valid UTF-8 once decoded (a lone surrogate or a stray "
            "byte); fix the name's text"
        ) from None


def _checked(request: Request, run_id: str, path: str) -> str:
    """The artifact path of a request, validated (with its run id) before any file access."""
    _raw_path_ok(request)
    check_run_id(run_id)
    return check_artifact_path(path)


def _state(request: Request) -> tuple[Any, Any]:
    return request.app.state.store, request.app.state.artifacts


# -- streaming a request body into a staging file --------------------------------------
class _BrokenOff(Exception):
    """The request body stopped before its end (client gone, body over the limit)."""


class _BodyReader:
    """A blocking ``read(n)`` over the chunks an async body sends through a memory stream;
    used from the worker thread that stages the body."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._chunk = memoryview(b"")
        self.aborted = False

    def read(self, n: int = -1) -> bytes:
        while not self._chunk:
            try:
                self._chunk = memoryview(anyio.from_thread.run(self._receive.receive))
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if self.aborted:
                    raise _BrokenOff("the upload stopped before its end") from None
                return b""
        take = len(self._chunk) if n is None or n < 0 else min(n, len(self._chunk))
        block, self._chunk = self._chunk[:take], self._chunk[take:]
        return bytes(block)


async def _stage_body(
    request: Request, stage: Callable[[Any], tuple[str, int, str]], discard: Callable[[str], None]
) -> tuple[str, int, str]:
    """Stream the request body into ``stage`` (run in a worker thread); its result.

    If the body breaks off (or goes over its limit), the staging thread fails too and
    leaves nothing; the body's error is raised.
    """
    send, receive = anyio.create_memory_object_stream[bytes](_QUEUED_CHUNKS)
    reader = _BodyReader(receive)
    outcome: list[Any] = []

    async def run_stage() -> None:
        try:
            outcome.append(await anyio.to_thread.run_sync(stage, reader))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            receive.close()

    task = asyncio.ensure_future(run_stage())
    try:
        async for chunk in request.stream():
            if chunk:
                await send.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the staging thread failed: its error is in outcome
    except BaseException:
        reader.aborted = True
        send.close()
        task.add_done_callback(lambda _: _discard_outcome(outcome, discard))
        raise
    send.close()
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda _: _discard_outcome(outcome, discard))
        raise
    result = outcome[0]
    if isinstance(result, OSError):
        raise _os_error(result, "cannot receive the upload") from result
    if isinstance(result, BaseException):
        raise result
    staged: tuple[str, int, str] = result
    return staged


def _discard_outcome(outcome: list[Any], discard: Callable[[str], None]) -> None:
    if outcome and isinstance(outcome[0], tuple):
        discard(outcome[0][0])


class _Staged:
    """The server's artifact store, whose ``stage`` answers with a file staged already
    (from the request body): ``store_artifact`` then stores bytes and record as locally."""

    def __init__(self, artifacts: Any, staged: tuple[str, int, str]) -> None:
        self._artifacts = artifacts
        self._staged = staged
        self.root: str = artifacts.root

    def stage(
        self, source: BinaryIO, run_id: str | None = None, path: str | None = None
    ) -> tuple[str, int, str]:
        return self._staged

    def commit(self, staged: str, run_id: str, path: str, streaming: bool = False) -> None:
        self._artifacts.commit(staged, run_id, path, streaming)

    def discard(self, staged: str) -> None:
        self._artifacts.discard(staged)

    def remove(self, run_id: str, path: str) -> None:
        self._artifacts.remove(run_id, path)

    def open(self, run_id: str, path: str) -> BinaryIO:
        return self._artifacts.open(run_id, path)

    def open_append(self, run_id: str, path: str) -> BinaryIO:
        return self._artifacts.open_append(run_id, path)

    def local_path(self, run_id: str, path: str) -> str | None:
        return self._artifacts.local_path(run_id, path)

    def measure(self, run_id: str, path: str) -> tuple[int, str] | None:
        found: tuple[int, str] | None = self._artifacts.measure(run_id, path)
        return found

    def url(self, run_id: str, path: str) -> str:
        return self._artifacts.url(run_id, path)

    def put_snapshot(self, snapshot_id: str, staged: str) -> None:
        self._artifacts.put_snapshot(snapshot_id, staged)

    def open_snapshot(self, snapshot_id: str) -> BinaryIO:
        return self._artifacts.open_snapshot(snapshot_id)


# -- artifact uploads, records, downloads ------------------------------------------------
@router.put("/runs/{run_id}/files/{path:path}", response_model=Artifact, openapi_extra=_BODY)
async def upload_file(
    run_id: str,
    path: str,
    request: Request,
    who: Contributor,
    x_content_sha256: Annotated[str | None, Header()] = None,
    x_runyard_streaming: Annotated[str | None, Header()] = None,
) -> Any:
    """Store the body (``application/octet-stream``, streamed) as ``path`` of the run,
    bytes and record together. Names are write-once (409), except a log sent with
    ``X-Runyard-Streaming: 1``, which may be replaced by a later upload. With
    ``X-Content-SHA256`` (hex), a body that does not hash to it is refused (400) and
    nothing is stored."""
    name = _checked(request, run_id, path)
    streaming = (x_runyard_streaming or "").strip().lower() in ("1", "true", "yes")
    expected = None
    if x_content_sha256 is not None:
        expected = x_content_sha256.strip().lower()
        if not _DIGEST.fullmatch(expected):
            raise UserError("X-Content-SHA256 must be the body's SHA-256 as 64 hex digits")
    return plain(await receive_file(request, who, run_id, name, streaming, expected))


async def receive_file(
    request: Request,
    who: Principal,
    run_id: str,
    name: str,
    streaming: bool = False,
    expected: str | None = None,
) -> ArtifactRecord:
    """Store the request's body as the file ``name`` (checked already) of ``run_id``:
    streamed into the artifact store's staging area, then bytes and record together. A
    taken name is refused (Conflict) before the body travels, unless both are logs
    (``streaming``); a body that does not hash to ``expected`` stores nothing."""
    store, artifacts = _state(request)

    def check() -> None:  # before the body travels: a taken name is refused at once
        found = _writable(who, store, run_id, name)
        if found is not None and not (streaming and found.streaming):
            raise Conflict(
                f"artifact {name!r} already exists in run {run_id}; artifacts are write-once: "
                "upload under another name"
            )

    await run_in_threadpool(check)
    staged = await _stage_body(
        request, functools.partial(artifacts.stage, run_id=run_id, path=name), artifacts.discard
    )
    try:
        if expected is not None and staged[2] != expected:
            raise UserError(
                f"the upload of {name!r} hashes to {staged[2]}, not to X-Content-SHA256 "
                f"{expected}: it was damaged on the way; nothing was stored"
            )
        record: ArtifactRecord = await run_in_threadpool(
            store_artifact, store, _Staged(artifacts, staged), run_id, name, _NO_SOURCE, streaming
        )
    except BaseException:
        artifacts.discard(staged[0])  # a no-op once committed
        raise
    return record


class _NoSource:
    def read(self, n: int = -1) -> bytes:  # pragma: no cover - _Staged never reads it
        return b""


_NO_SOURCE: Any = _NoSource()

_LOCKS: weakref.WeakValueDictionary[tuple[int, str, str], Any] = weakref.WeakValueDictionary()
_LOCKS_GUARD = threading.Lock()


def _writable(who: Principal, store: Any, run_id: str, name: str) -> ArtifactRecord | None:
    """Check that ``who`` may write files of ``run_id``, which exists; the record stored
    under ``name`` already, if any."""
    require_run(who, store, run_id)
    store.get_run(run_id)
    try:
        found: ArtifactRecord = store.get_artifact(run_id, name)
    except NotFound:
        return None
    return found


def _append_at(artifacts: Any, run_id: str, name: str, offset: int, body: bytes) -> int:
    """Append what of ``body`` (meant for ``offset``) the log does not have yet; its size.

    A local file is locked while its end is read and written, so the worker processes of
    one server (``--workers``) take turns too: a retried append is never written twice. A
    log in a bucket has no file to lock: the caller's locks (this process's, then the
    store's across servers) order its appends, and its writer stores the piece when closed.
    """
    local = artifacts.local_path(run_id, name) is not None
    with artifacts.open_append(run_id, name) as fh:
        if local:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes
            size = os.fstat(fh.fileno()).st_size
        else:
            size = int(fh.tell())
        if size < offset:
            raise Conflict(
                f"log {name!r} of run {run_id} ends at byte {size} on the server, not "
                f"at {offset}: resend from byte {size}"
            )
        new = body[size - offset :]
        if new:
            fh.write(new)
            if local:
                fh.flush()
        return size + len(new)


def _log_lock(artifacts: Any, run_id: str, name: str) -> Any:
    """One lock per log of this server: appends to it take turns."""
    key = (id(artifacts), run_id, name)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = threading.RLock()
        return lock


def _log_size(artifacts: Any, run_id: str, name: str) -> int:
    local = artifacts.local_path(run_id, name)
    if local is not None:
        try:
            return os.path.getsize(local)
        except FileNotFoundError:
            return 0
    with artifacts.open_append(run_id, name) as fh:
        return int(fh.tell())


def _record_log(store: Any, artifacts: Any, run_id: str, name: str) -> None:
    """Record a log as a streaming artifact, with size and digest of the server's copy."""
    import time

    digest = hashlib.sha256()
    size = 0
    try:
        with artifacts.open(run_id, name) as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
                size += len(block)
        hexdigest = digest.hexdigest()
    except NotFound:
        hexdigest = ""  # nothing written yet: recorded as an empty log, as locally
    store.add_artifact(ArtifactRecord(run_id, name, size, hexdigest, time.time(), True))


@router.post("/runs/{run_id}/logs/{path:path}", response_model=LogSize, openapi_extra=_BODY)
async def append_log(
    run_id: str,
    path: str,
    request: Request,
    who: Contributor,
    offset: Annotated[int, Query(ge=-1)],
    final: bool = False,
) -> Any:
    """Append the body to a growing log; ``offset`` is where the client thinks it ends.

    Bytes the server has already (a retried append) are skipped; a log shorter than
    ``offset`` is a 409 whose message says ``ends at byte N``: resend from there.
    ``offset=-1`` appends nothing. ``final=true`` records the log as a streaming artifact,
    its size and digest read from the server's own copy. The answer is the log's size.
    """
    name = _checked(request, run_id, path)
    body = await request.body()  # small: a client sends a log in pieces of at most 1 MB
    store, artifacts = _state(request)

    def append() -> int:
        found = _writable(who, store, run_id, name)
        if found is not None and not found.streaming:
            raise Conflict(
                f"{name!r} of run {run_id} is a regular file, written once: it is not a "
                "log that grows"
            )
        # the threads of this process take turns, then the processes of every server
        with _log_lock(artifacts, run_id, name), store.run_file_lock(run_id, name):
            size = _log_size(artifacts, run_id, name)
            if offset >= 0:
                try:
                    size = _append_at(artifacts, run_id, name, offset, body)
                except OSError as exc:
                    raise _os_error(exc, f"cannot append to {name!r} of run {run_id}") from exc
            if final:
                _record_log(store, artifacts, run_id, name)
            return size

    return {"size": await run_in_threadpool(append)}


@router.get("/runs/{run_id}/artifacts", response_model=list[Artifact])
def list_artifacts(run_id: str, request: Request, who: Reader, prefix: str | None = None) -> Any:
    """The run's artifact records, sorted by path; ``prefix`` keeps those in one folder."""
    _raw_path_ok(request)
    check_run_id(run_id)
    if prefix:
        check_artifact_path(prefix.rstrip("/") + "/x")
    return [plain(a) for a in request.app.state.store.list_artifacts(run_id, prefix or None)]


@router.get("/runs/{run_id}/artifacts/{path:path}", response_model=Artifact)
def get_artifact(run_id: str, path: str, request: Request, who: Reader) -> Any:
    """One artifact record."""
    name = _checked(request, run_id, path)
    return plain(request.app.state.store.get_artifact(run_id, name))


@router.get("/runs/{run_id}/files/{path:path}", response_class=Response, responses=_BYTES)
def download_file(run_id: str, path: str, request: Request, who: Reader) -> Response:
    """The artifact's bytes, streamed as an attachment; ``Range`` gives a part (206; an
    unsatisfiable range is 416)."""
    name = _checked(request, run_id, path)
    return file_response(request, run_id, name)


def file_response(request: Request, run_id: str, name: str) -> Response:
    """The bytes of the file ``name`` (checked already) of ``run_id`` as an attachment;
    a ``Range`` gives a part, whether the file is on disk or in a bucket."""
    store, artifacts = _state(request)
    record = store.get_artifact(run_id, name)
    headers = {"X-Content-Type-Options": "nosniff"}
    if not record.streaming:
        headers["X-Content-SHA256"] = record.digest
    local = artifacts.local_path(run_id, name)
    if local is not None:
        if not os.path.isfile(local):
            raise NotFound(f"the bytes of {name!r} of run {run_id} are missing on the server")
        return FileResponse(
            local,
            media_type="application/octet-stream",
            filename=name.rsplit("/", 1)[-1],
            headers=headers,
        )
    source = artifacts.open(run_id, name)
    status = 200
    length: int | None = None
    if source.seekable():
        size = source.seek(0, os.SEEK_END)
        source.seek(0)
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Length"] = str(size)
        wanted = _range(request.headers.get("range"), size)
        if isinstance(wanted, str):
            source.close()
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if wanted is not None:
            start, end = wanted
            source.seek(start)
            length = end - start + 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            headers["Content-Length"] = str(length)
            headers.pop("X-Content-SHA256", None)  # the digest of the whole file
    return StreamingResponse(
        _chunks(source, length),
        status_code=status,
        media_type="application/octet-stream",
        headers=headers,
    )


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last byte) of a single ``Range`` of a file of ``size`` bytes;
    ``"unsatisfiable"``; None for the whole file (no range, or several)."""
    found = _RANGE.fullmatch((header or "").strip())
    if found is None or found.group(1) == found.group(2) == "":
        return None
    first, last = found.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, end


def _chunks(source: BinaryIO, length: int | None = None) -> Iterator[bytes]:
    with source:
        yield from blocks(source, length)


# -- snapshots --------------------------------------------------------------------------
def _stage_scratch(source: Any) -> tuple[str, int, str]:
    """Copy ``source`` into a file of this process's scratch folder (swept if it dies)."""
    return copy_to_file(source, _owners.process_folder(), "snapshot-", ".zip")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@router.put("/snapshots/{snapshot_id}", response_model=Snapshot, openapi_extra=_BODY)
async def upload_snapshot(
    snapshot_id: str,
    request: Request,
    who: Contributor,
    size: Annotated[int | None, Query(ge=0)] = None,
    files: Annotated[int | None, Query(ge=0)] = None,
) -> Any:
    """Store a snapshot zip (streamed) under its content id, and record it.

    The zip must hold what ``take_snapshot`` writes, and its content must hash to
    ``snapshot_id``: a zip whose content names another id is refused (400), so no one can
    put other content under an id. ``size`` and ``files`` are the client's count; the
    server records its own (at most the snapshot limits; a zip bomb is refused).
    """
    _raw_path_ok(request)
    check_snapshot_id(snapshot_id)
    store, artifacts = _state(request)
    tmp, _, _ = await _stage_body(request, _stage_scratch, _unlink)
    try:

        def verify_and_store() -> None:
            found, total, count = zip_content_id(tmp, MAX_FILES, MAX_BYTES)
            if found != snapshot_id:
                raise UserError(
                    f"the zip's content is snapshot {found}, not {snapshot_id}: nothing stored"
                )
            if files is not None and files != count:
                raise UserError(f"the zip holds {count} files, not {files}: nothing stored")
            if store.has_snapshot(snapshot_id):
                return
            with open(tmp, "rb") as fh:
                staged, _, _ = artifacts.stage(fh)
            try:
                artifacts.put_snapshot(snapshot_id, staged)
            except BaseException:
                artifacts.discard(staged)
                raise
            store.add_snapshot(snapshot_id, total, count)

        await run_in_threadpool(verify_and_store)
    finally:
        _unlink(tmp)
    return {"id": snapshot_id, "exists": True}


@router.get("/snapshots/{snapshot_id}/exists", response_model=Snapshot)
def snapshot_exists(snapshot_id: str, request: Request, who: Reader) -> Any:
    check_snapshot_id(snapshot_id)
    return {"id": snapshot_id, "exists": request.app.state.store.has_snapshot(snapshot_id)}


@router.get("/snapshots/{snapshot_id}", response_class=Response, responses=_BYTES)
def download_snapshot(snapshot_id: str, request: Request, who: Reader) -> Response:
    """The snapshot zip, streamed."""
    check_snapshot_id(snapshot_id)
    store, artifacts = _state(request)
    if not store.has_snapshot(snapshot_id):
        raise NotFound(f"snapshot {snapshot_id} is not on this server")
    source = artifacts.open_snapshot(snapshot_id)
    return StreamingResponse(
        _chunks(source),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{snapshot_id}.zip"',
            "X-Content-Type-Options": "nosniff",
        },
    )
