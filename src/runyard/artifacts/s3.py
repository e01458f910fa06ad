"""Artifacts in an S3-compatible bucket (AWS S3, MinIO, Ceph...): ``s3://bucket/prefix``.

Keys, below the root's prefix::

    runs/<run id>/<path>       a run's files (and its growing logs)
    snapshots/<id>.zip         snapshot archives
    .staging/<owner>.<random>  uploads on their way in

Endpoint, region and credentials come from boto3's own configuration (``AWS_ENDPOINT_URL``
or ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``..., ``AWS_PROFILE``,
``~/.aws/config`` and ``~/.aws/credentials``, an instance role). boto3 is imported only
when an ``s3://`` root is opened.

Every write happens once or not at all, and no reader ever sees part of an object. A file
of at least one part (``RUNYARD_S3_PART_MB``) is sent as a multipart upload straight to its
final key, which S3 shows only once ``commit`` completes it; a marker under ``.staging/``
names the upload meanwhile. A smaller file goes to a staging key, and ``commit`` copies it
inside S3 to its final key. An upload killed midway leaves only a staging key, a marker
and an incomplete multipart upload (never an object under a final key), which a later
open of the store removes (those of dead processes of this machine at once, others after a
day).

S3 cannot append. A growing log (:class:`S3Log`) buffers what is written and replaces the
object with its longer self at a bounded rate and at ``close``: a small log is rewritten
whole, a large one by a multipart upload whose first parts are copied inside S3 from the
object as it stands, so the bytes written so far never travel again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from .. import _owners
from .._terminal import say
from .._validation import check_artifact_path, check_run_id, check_snapshot_id
from ..errors import NotFound, RunyardError, StoreError, UserError

_CHUNK = 1 << 20
MIN_PART = 5 << 20  # S3's smallest part (all but the last of a multipart upload)
MAX_COPY_PART = 5 << 30  # S3's largest part copied by UploadPartCopy
MAX_KEY = 1024  # bytes of UTF-8 in an S3 key
STAGING_MAX_AGE = 86400  # staging keys of other machines' processes: removed after a day
ENV_PART_MB = "RUNYARD_S3_PART_MB"
UPLOADS_AT_ONCE = 4  # parts of one upload in flight (and in memory) at once
UPLOAD_MARK = ".upload"  # a staging key naming a multipart upload to a final key
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_s3_root(root: str | None) -> bool:
    """Is ``root`` an ``s3://`` artifact location (not a folder)?"""
    return isinstance(root, str) and root.startswith("s3://")


def parse_root(root: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (``bucket``, ``some/prefix/``); checked."""
    rest = root.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UserError(
            f"{root!r} does not name a bucket: write s3://BUCKET or s3://BUCKET/PREFIX "
            "(a bucket name is 3-255 letters, digits, '.', '-' or '_')"
        )
    parts = [p for p in prefix.split("/") if p]
    if _CONTROL.search(prefix) or any(p in (".", "..") for p in parts):
        raise UserError(
            f"the prefix of {root!r} holds a control character, '.' or '..'; give a plain "
            "prefix such as s3://bucket/team/runyard"
        )
    return bucket, "".join(p + "/" for p in parts)


def part_size() -> int:
    """Bytes per part of a multipart upload, also the size from which uploads use one:
    ``RUNYARD_S3_PART_MB`` (default 8, at least S3's minimum of 5)."""
    value = os.environ.get(ENV_PART_MB, "8")
    try:
        mb = float(value)
    except ValueError:
        mb = 0
    if mb < 5:
        raise UserError(f"{ENV_PART_MB}={value!r}: give a number of MB of at least 5")
    return int(mb * (1 << 20))


def _boto() -> Any:
    try:
        import boto3
        import botocore.config
    except ImportError:
        raise UserError(
            "artifacts on S3 need boto3, which is not installed: pip install 'runyard[s3]'"
        ) from None
    return boto3, botocore.config


class S3ArtifactStore:
    """The ArtifactStore of an ``s3://bucket/prefix`` root.

        >>> store = S3ArtifactStore("s3://team-runs/runyard")   # doctest: +SKIP

    Opening checks that the bucket can be reached and listed with the credentials boto3
    finds, so a wrong bucket, endpoint or key fails here with a UserError saying what to
    fix, not in the middle of a run. Run ids, paths and snapshot ids are validated again
    before any key is built: a key never leaves its run's prefix.
    """

    def __init__(self, root: str) -> None:
        self.bucket, self.prefix = parse_root(root)
        self.root = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        _boto()
        self.part = part_size()
        self._client: Any = None
        self._client_pid = 0
        self._client_lock = threading.Lock()
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(
            multipart_threshold=self.part,
            multipart_chunksize=self.part,
            max_concurrency=UPLOADS_AT_ONCE,
        )  # for copies inside S3 (staged → final): multipart above one part
        self._staging = self.prefix + ".staging/"
        self._lock = threading.Lock()
        self._open_uploads: dict[str, tuple[str, str, list[dict[str, Any]]]] = {}
        self._check_bucket()
        self._sweep_staging()

    @property
    def client(self) -> Any:
        """This process's S3 client (a forked child makes its own: connections are not
        shared across a fork)."""
        if self._client is None or self._client_pid != os.getpid():
            with self._client_lock:
                if self._client is None or self._client_pid != os.getpid():
                    self._client = self._new_client()
                    self._client_pid = os.getpid()
        return self._client

    def _new_client(self) -> Any:
        boto3, config = _boto()
        try:
            return boto3.session.Session().client(
                "s3",
                config=config.Config(
                    retries={"max_attempts": 6, "mode": "standard"},
                    connect_timeout=10,
                    read_timeout=120,
                    max_pool_connections=16,
                ),
            )
        except Exception as exc:  # a broken profile or config file
            raise UserError(f"cannot set up the S3 client for {self.root}: {exc}") from None

    # -- keys ---------------------------------------------------------------------------
    def _run_key(self, run_id: str, path: str) -> str:
        """The key of ``path`` of ``run_id``; both are checked again, whoever validated them."""
        folder = f"{self.prefix}runs/{check_run_id(run_id)}/"
        key = folder + check_artifact_path(path)
        parts = key[len(folder) :].split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise UserError(f"artifact path {path!r} escapes its run's prefix")
        return self._bounded(key, f"artifact path {path!r}")

    def _snapshot_key(self, snapshot_id: str) -> str:
        return f"{self.prefix}snapshots/{check_snapshot_id(snapshot_id)}.zip"

    def _staged_key(self, staged: str) -> str:
        if not staged.startswith(self._staging) or "/" in staged[len(self._staging) :]:
            raise UserError(f"{staged!r} is not a staged upload of {self.root}")
        return staged

    def _bounded(self, key: str, what: str) -> str:
        if len(key.encode("utf-8")) > MAX_KEY:
            raise UserError(
                f"{what} is too long for S3: with its run id and the prefix it makes a key of "
                f"{len(key.encode('utf-8'))} bytes, and S3 keys end at {MAX_KEY}; shorten it"
            )
        return key

    def url(self, run_id: str, path: str) -> str:
        return f"s3://{self.bucket}/{self._run_key(run_id, path)}"

    def local_path(self, run_id: str, path: str) -> str | None:
        return None

    # -- checks and errors ------------------------------------------------------------
    def _where(self) -> str:
        endpoint = getattr(self.client.meta, "endpoint_url", None) or "AWS S3"
        return f"{self.root} (endpoint {endpoint})"

    def _check_bucket(self) -> None:
        """Fail now, with what to do, if the bucket cannot be used."""
        import botocore.exceptions as bx

        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except bx.NoCredentialsError:
            raise UserError(
                f"no AWS credentials for {self._where()}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or write ~/.aws/credentials"
            ) from None
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError) as exc:
            raise UserError(
                f"cannot reach the S3 endpoint of {self._where()}: {exc}. Check "
                "AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3, or endpoint_url in ~/.aws/config) "
                "and that the storage server runs"
            ) from None
        except bx.ClientError as exc:
            code = _code(exc)
            if code in ("NoSuchBucket", "404"):
                raise NotFound(
                    f"bucket {self.bucket!r} does not exist at {self._where()}: create it "
                    f"(aws s3 mb s3://{self.bucket}) or name the right one"
                ) from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                raise UserError(
                    f"S3 refused the credentials for {self._where()} ({code}): check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE; the key needs "
                    "s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket"
                ) from None
            raise UserError(f"S3 refused {self._where()}: {exc}") from None
        except bx.BotoCoreError as exc:
            raise UserError(f"cannot use {self._where()}: {exc}") from None

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """S3 and network failures as runyard errors: a missing key is NotFound, the rest
        a StoreError (retried by boto3 first)."""
        import botocore.exceptions as bx

        try:
            yield
        except bx.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"{what}: not found in {self.root}") from None
            raise StoreError(f"{what}: S3 answered {exc}") from exc
        except bx.BotoCoreError as exc:
            raise StoreError(f"{what}: {exc} ({self._where()})") from exc

    def _sweep_staging(self) -> None:
        """Remove the staged uploads of dead processes of this machine, and any older than
        a day: leftovers of uploads killed midway."""
        now = time.time()

        def stale(name: str, when: Any) -> bool:
            owner = name.split(".", 1)[0]
            try:
                verdict = _owners.alive(owner)
            except ValueError:
                verdict = None
            if verdict:
                return False
            return verdict is False or now - when.timestamp() > STAGING_MAX_AGE

        try:
            with self._errors("cannot clean the staging area"):
                pages = self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=self._staging
                )
                for page in pages:
                    for item in page.get("Contents", []):
                        name = item["Key"][len(self._staging) :]
                        if stale(name, item["LastModified"]):
                            if name.endswith(UPLOAD_MARK):
                                self._abort_marked(item["Key"])
                            self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                uploads = self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=self._staging
                )
                for page in uploads:
                    for item in page.get("Uploads", []):
                        name = item["Key"][len(self._staging) :]
                        if stale(name, item["Initiated"]):
                            self.client.abort_multipart_upload(
                                Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                            )
        except RunyardError as exc:  # the store works without: say so and go on
            say(f"runyard: {exc}")

    def _abort_marked(self, marker: str) -> None:
        """Abort the upload a dead process's marker names (only below this root's runs)."""
        body = self.client.get_object(Bucket=self.bucket, Key=marker)["Body"].read()
        try:
            note = json.loads(body)
            key, upload = str(note["key"]), str(note["upload"])
        except (ValueError, KeyError, TypeError):
            return
        if key.startswith(f"{self.prefix}runs/"):
            self._abort(key, upload)

    # -- uploads ------------------------------------------------------------------------
    def stage(
        self, source: BinaryIO, run_id: str | None = None, path: str | None = None
    ) -> tuple[str, int, str]:
        """Upload ``source`` (streamed); return (a staging handle, size, sha256).

        A file of less than one part goes to a staging key, copied to its place by
        ``commit``. A larger one whose place is known becomes a multipart upload to that
        place, completed by ``commit`` (until then nobody sees it); a marker under
        ``.staging/`` names it, so that a later open can abort it if this process dies.
        """
        final = self._run_key(run_id, path) if run_id is not None and path is not None else None
        key = f"{self._staging}{_owners.owned_prefix()}{uuid.uuid4().hex}"
        reader = _Hashing(source)
        with self._errors("cannot upload to the staging area"):
            first = reader.read_exactly(self.part)
            if len(first) < self.part:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=first)
                return key, reader.size, reader.digest.hexdigest()
        target, marker = (final, key + UPLOAD_MARK) if final is not None else (key, None)
        try:
            with self._errors("cannot upload to the bucket"):
                upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=target)
                upload_id = upload["UploadId"]
                if marker is not None:
                    note = json.dumps({"key": target, "upload": upload_id}).encode()
                    self.client.put_object(Bucket=self.bucket, Key=marker, Body=note)
                try:
                    parts = self._send_parts(reader, first, target, upload_id)
                    if marker is None:
                        self._complete(target, upload_id, parts)
                except BaseException:
                    self._abort(target, upload_id)
                    raise
        except BaseException:
            if marker is not None:
                self._delete_quietly(marker)
            raise
        if marker is None:
            return key, reader.size, reader.digest.hexdigest()
        with self._lock:
            self._open_uploads[marker] = (target, upload_id, parts)
        return marker, reader.size, reader.digest.hexdigest()

    def _send_parts(
        self, reader: _Hashing, first: bytes, key: str, upload: str
    ) -> list[dict[str, Any]]:
        """Send the parts of an upload, read in this thread (a server's request body can
        only be read here), at most ``UPLOADS_AT_ONCE`` in flight (and in memory)."""
        from concurrent.futures import ThreadPoolExecutor

        room = threading.BoundedSemaphore(UPLOADS_AT_ONCE)
        failed = threading.Event()

        def send(number: int, block: bytes) -> dict[str, Any]:
            try:
                sent = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=block
                )
                return {"PartNumber": number, "ETag": sent["ETag"]}
            except BaseException:
                failed.set()
                raise
            finally:
                room.release()

        with ThreadPoolExecutor(UPLOADS_AT_ONCE, "runyard-s3-upload") as pool:
            futures = []
            block, number = first, 1
            while block and not failed.is_set():
                room.acquire()
                futures.append(pool.submit(send, number, block))
                block, number = reader.read_exactly(self.part), number + 1
            return [f.result() for f in futures]

    def _complete(self, key: str, upload: str, parts: list[dict[str, Any]]) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )

    def _abort(self, key: str, upload: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        except Exception:
            pass  # its marker stays for the next sweep, or the bucket's lifecycle rule

    def _delete_quietly(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception:
            pass

    def _copy(self, source: str, target: str) -> None:
        """Copy inside S3 (multipart for large objects); ``target`` appears whole or not."""
        self.client.copy(
            {"Bucket": self.bucket, "Key": source}, self.bucket, target, Config=self.transfer
        )

    def commit(self, staged: str, run_id: str, path: str, streaming: bool = False) -> None:
        """Complete the upload at its place, or copy a small staged file there: either way
        the object appears whole, at once."""
        key = self._run_key(run_id, path)
        with self._lock:
            pending = self._open_uploads.get(staged)
        with self._errors(f"cannot store {path!r} of run {run_id}"):
            if pending is None:
                self._copy(self._staged_key(staged), key)
            elif pending[0] != key:
                raise UserError(f"{staged!r} was staged for another place than {path!r}")
            else:
                self._complete(*pending)
                with self._lock:
                    self._open_uploads.pop(staged, None)
        self.discard(staged)

    def discard(self, staged: str) -> None:
        """Remove a staged file, or abort a multipart upload not completed."""
        with self._lock:
            pending = self._open_uploads.pop(staged, None)
        try:
            with self._errors("cannot remove a staged upload"):
                if pending is not None:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=pending[0], UploadId=pending[1]
                    )
                self.client.delete_object(Bucket=self.bucket, Key=self._staged_key(staged))
        except StoreError as exc:  # harmless: the next open of the store sweeps it
            say(f"runyard: {exc}")

    def remove(self, run_id: str, path: str) -> None:
        """Delete the bytes of ``path`` (whose record could not be stored)."""
        with self._errors(f"cannot remove {path!r} of run {run_id}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._run_key(run_id, path))

    # -- downloads ----------------------------------------------------------------------
    def open(self, run_id: str, path: str) -> BinaryIO:
        """The artifact's bytes, streamed; the stream can seek (a ranged GET)."""
        key = self._run_key(run_id, path)
        missing = f"the bytes of {path!r} of run {run_id} are missing from {self.root}"
        return cast(BinaryIO, io.BufferedReader(_Reader(self, key, missing, True), _CHUNK))

    def measure(self, run_id: str, path: str) -> tuple[int, str] | None:
        """(size, sha256) of a log written in place; None if it was never written."""
        try:
            fh = self.open(run_id, path)
        except NotFound:
            return None
        digest = hashlib.sha256()
        size = 0
        with fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
                size += len(block)
        return size, digest.hexdigest()

    def open_append(self, run_id: str, path: str) -> BinaryIO:
        """A log that grows while a run goes (see :class:`S3Log`)."""
        return cast(BinaryIO, S3Log(self, self._run_key(run_id, path)))

    # -- snapshots ----------------------------------------------------------------------
    def put_snapshot(self, snapshot_id: str, staged: str) -> None:
        key = self._snapshot_key(snapshot_id)
        with self._errors(f"cannot store snapshot {snapshot_id}"):
            if self._size_of(key) is None:
                self._copy(self._staged_key(staged), key)
        self.discard(staged)

    def open_snapshot(self, snapshot_id: str) -> BinaryIO:
        """The zip, streamed front to back (a reader that needs to seek copies it)."""
        key = self._snapshot_key(snapshot_id)
        missing = f"snapshot {snapshot_id!r} is not in {self.root}"
        return cast(BinaryIO, io.BufferedReader(_Reader(self, key, missing, False), _CHUNK))

    def _size_of(self, key: str) -> int | None:
        import botocore.exceptions as bx

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except bx.ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Hashing:
    """A stream read front to back, counted and hashed as it goes."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.size = 0
        self.digest = hashlib.sha256()

    def read_exactly(self, n: int) -> bytes:
        """``n`` bytes, fewer only at the end of the stream."""
        blocks = []
        wanted = n
        while wanted > 0:
            block = self._source.read(min(wanted, _CHUNK))
            if not block:
                break
            blocks.append(block)
            wanted -= len(block)
        data = b"".join(blocks)
        self.digest.update(data)
        self.size += len(data)
        return data


class _Reader(io.RawIOBase):
    """An object's body as a raw stream. Opening asks for its size (a missing object is
    NotFound there); the first read, a read after a seek, or after a connection broken
    midway, GETs the object from the position reached (a ranged GET)."""

    RESUMES = 3

    def __init__(self, store: S3ArtifactStore, key: str, missing: str, seekable: bool) -> None:
        self._store = store
        self._key = key
        self._missing = missing
        self._seekable = seekable
        self._pos = 0  # where the reader is
        self._at = 0  # where the body being read is
        self._resumed = 0
        self._body: Any = None
        try:
            with store._errors(missing):
                found = store._size_of(key)
        except NotFound:
            found = None
        if found is None:
            raise NotFound(missing)
        self.size = found

    def _open_at(self, start: int) -> None:
        self._close_body()
        args: dict[str, Any] = {"Bucket": self._store.bucket, "Key": self._key}
        if start:
            args["Range"] = f"bytes={start}-"
        try:
            with self._store._errors(self._missing):
                answer = self._store.client.get_object(**args)
        except NotFound:
            raise NotFound(self._missing) from None
        self._body = answer["Body"]
        total = answer.get("ContentRange", "").rpartition("/")[2]
        self.size = int(total) if total.isdigit() else int(answer["ContentLength"]) + start
        self._at = start

    def _close_body(self) -> None:
        if self._body is not None:
            try:
                self._body.close()
            except Exception:
                pass
            self._body = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("this S3 stream is read front to back")
        target = {0: offset, 1: self._pos + offset, 2: self.size + offset}[whence]
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target  # the next read fetches from there
        return target

    def readinto(self, buffer: Any) -> int:
        import botocore.exceptions as bx

        while True:
            if self._pos >= self.size:
                return 0
            if self._body is None or self._at != self._pos:
                self._open_at(self._pos)
            try:
                block = self._body.read(len(buffer))
            except (bx.BotoCoreError, OSError) as exc:
                self._resumed += 1
                if self._resumed > self.RESUMES:
                    raise StoreError(
                        f"the download of {self._key} broke off at byte {self._pos}: {exc}"
                    ) from exc
                self._close_body()
                continue
            if not block:  # the object ended before its size (replaced meanwhile)
                return 0
            n = len(block)
            buffer[:n] = block
            self._pos += n
            self._at += n
            return n

    def close(self) -> None:
        self._close_body()
        super().close()


class S3Log(io.BufferedIOBase):
    """A log object that grows: ``write`` only buffers; the object is replaced by its
    longer self at most every ``interval()`` seconds after a ``flush`` (or sooner once
    ``FLUSH_BYTES`` wait), and at ``close``, which raises a StoreError if the rest cannot
    be stored. Readers see the log grow by whole pieces; no reader ever sees a part of a
    piece. ``tell()`` is the log's size with what waits.

    Bytes written while S3 cannot be reached wait in memory up to ``MAX_BUFFER``; beyond
    that they are dropped, with a note in the log. One log has one writer at a time.
    """

    MIN_INTERVAL = 1.0
    MAX_INTERVAL = 30.0
    REWRITE_RATE = 64 << 20  # bytes per second a rewrite is taken to cost, for the interval
    FLUSH_BYTES = 8 << 20
    MAX_BUFFER = 64 << 20

    def __init__(self, store: S3ArtifactStore, key: str) -> None:
        super().__init__()
        self._store = store
        self._key = key
        with store._errors(f"cannot open the log {key}"):
            self._size = store._size_of(key) or 0  # what the object holds
        self._content: bytes | None = None if self._size else b""  # kept while small
        self._buffer = bytearray()
        self._dropped = 0
        self._cond = threading.Condition()
        self._upload = threading.Lock()
        self._asked = False
        self._closing = False
        self._last = 0.0
        self._failing: str | None = None
        self._thread: threading.Thread | None = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        with self._cond:
            return self._size + len(self._buffer)

    def interval(self) -> float:
        """Seconds between two rewrites: longer as the log grows (each costs its size)."""
        return min(self.MAX_INTERVAL, max(self.MIN_INTERVAL, self._size / self.REWRITE_RATE))

    def write(self, data: Any) -> int:
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        with self._cond:
            if self._closing:
                raise ValueError("write to a closed log")
            if len(self._buffer) + size > self.MAX_BUFFER:
                self._dropped += size
                return size
            self._buffer += data
            if len(self._buffer) >= self.FLUSH_BYTES:
                self._asked = True
                self._start()
                self._cond.notify_all()
        return size

    def flush(self) -> None:
        """Ask for the waiting bytes to be stored (within ``interval()``); does not wait."""
        with self._cond:
            if self._buffer and not self._closing:
                self._asked = True
                self._start()
                self._cond.notify_all()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="runyard-s3-log", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not self._asked:
                    self._cond.wait()
                if self._closing:
                    return
                wait = self._last + self.interval() - time.monotonic()
                if self._failing is not None:
                    wait = max(wait, 2.0)
                if wait > 0 and len(self._buffer) < self.FLUSH_BYTES:
                    self._cond.wait(wait)
                    if self._closing:
                        return
                self._asked = False
            try:
                self._store_waiting()
            except RunyardError as exc:
                with self._cond:
                    self._asked = True  # try again after a pause
                    if self._failing is None:
                        say(f"runyard: the log {self._key} is not stored for now: {exc}")
                    self._failing = str(exc)

    def _store_waiting(self) -> None:
        """Replace the object by itself plus the waiting bytes (one rewrite at a time)."""
        with self._upload:
            with self._cond:
                if self._dropped and len(self._buffer) < self.MAX_BUFFER:
                    self._buffer += _lost(self._dropped)
                    self._dropped = 0
                piece = bytes(self._buffer)
            if piece:
                self._append(piece)
            with self._cond:
                del self._buffer[: len(piece)]
                self._size += len(piece)
                self._last = time.monotonic()
                self._failing = None

    def _append(self, piece: bytes) -> None:
        store, bucket, key = self._store, self._store.bucket, self._key
        with store._errors(f"cannot append to the log {key}"):
            if self._size < MIN_PART:
                if self._content is None:
                    found = store.client.get_object(Bucket=bucket, Key=key)["Body"].read()
                    self._content = found[: self._size]
                body = self._content + piece
                store.client.put_object(Bucket=bucket, Key=key, Body=body)
                self._content = body if len(body) < MIN_PART else None
                return
            self._content = None
            upload = store.client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            try:
                parts = []
                count = -(-self._size // MAX_COPY_PART)
                step = -(-self._size // count)
                for number, start in enumerate(range(0, self._size, step), 1):
                    end = min(self._size, start + step) - 1
                    copied = store.client.upload_part_copy(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload,
                        PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": key},
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                    parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
                sent = store.client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload, PartNumber=count + 1, Body=piece
                )
                parts.append({"PartNumber": count + 1, "ETag": sent["ETag"]})
                store.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                try:
                    store.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
                except Exception:
                    pass  # left to the bucket's rule for incomplete uploads (docs)
                raise

    def close(self) -> None:
        """Store what waits; a StoreError if it cannot be stored."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        try:
            if self._buffer or self._dropped:
                self._store_waiting()
        finally:
            super().close()


def _lost(count: int) -> bytes:
    return f"\n[runyard: {count} bytes of this log were dropped while S3 was away]\n".encode()
