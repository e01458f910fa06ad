"""Metric batches on their way to a runyard server: delivered now, or kept until it answers.

:class:`Outbox` takes encoded batches from ``RestStore.log_batch``. Each batch gets an
idempotency key at once (``uuid4().hex``); the key travels with the batch through memory and
spool, and the server stores a key once, so a batch sent again after a lost answer is never
stored twice.

When nothing is pending, :meth:`Outbox.put` sends the batch at once (``send`` has its own
short retry budget). When the server cannot be reached the batch becomes *pending*, and a
daemon thread sends the pending batches in order, oldest first, with exponential backoff
and jitter, until they are delivered or the outbox is closed. While anything is pending,
``put`` only appends, and never waits for the network.

Pending batches are kept in memory up to ``memory_limit`` bytes of payload (64 MB by default;
``RUNYARD_SPOOL_MEMORY_MB`` sets it). Beyond it, every pending batch goes to a spool file in
``spool_dir`` (appended, checksummed, fsynced) until the spool has been delivered and
deleted; then memory is used again. At any moment the pending batches are in memory *or* in
the spool, never both, so the file's order is the order of delivery.

The spool file of a living outbox is locked (``flock``); one of a process that ended (killed,
or gone while the server was down) is replayed by :func:`replay_spools` (``runyard sync``).

Contract for the caller (``RestStore``):

- When ``put`` returns, the batch is delivered or pending. ``put`` raises only a refusal (a
  :class:`~runyard.errors.RunyardError` other than ``ServerUnreachable``): that of its own
  direct attempt, or one the server gave in the background for an earlier batch of the same
  run. Either way the batch passed to that ``put`` was **not** taken: it is neither stored
  nor pending, exactly as when a local store's ``log_batch`` raises.
- A background refusal is raised once: by the next ``put`` for its run or the next
  :meth:`~Outbox.drain`, whichever comes first; one never raised is printed on stderr at exit.
- Durability: :meth:`~Outbox.persist` writes every batch pending in memory to the spool and
  fsyncs it, so the process may then die without losing any. ``flush()`` is
  ``drain(short timeout)`` then ``persist()``. At interpreter exit every live outbox drains
  for a moment and persists; batches that become pending after that are spooled at once.
- A forked child starts with an empty outbox: the parent keeps (and delivers) its batches.

    >>> import tempfile
    >>> stored = {}
    >>> outbox = Outbox(lambda run, key, data: stored.setdefault(key, data), tempfile.mkdtemp())
    >>> outbox.put("run-1", b"batch")
    >>> outbox.pending(), list(stored.values())
    (0, [b'batch'])
    >>> outbox.close()
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import itertools
import math
import os
import random
import stat
import struct
import sys
import threading
import uuid
import warnings
import weakref
import zlib
from collections import deque
from collections.abc import Callable

from .. import _owners
from ..errors import RunyardError, ServerUnreachable, StoreError, UserError, mark_stored

Send = Callable[[str, str, bytes], None]
Log = Callable[[str], object]

ENV_MEMORY_MB = "RUNYARD_SPOOL_MEMORY_MB"
ENV_SPOOL_DIR = "RUNYARD_SPOOL_DIR"
DEFAULT_MEMORY_MB = 64
MAX_BACKOFF = 5.0  # seconds between two attempts of the background sender, at most
EXIT_DRAIN_SECONDS = 1.0  # how long the exit hook lets pending batches go out first

SUFFIX = ".spool"
NEW_SUFFIX = ".spool.new"  # a spool being created (renamed once its header is written)
REJECTED = "rejected"  # beside the spools: batches the server refused during a replay
MAGIC = b"RYSPOOL1"
HEADER = struct.Struct(">8sQ")  # magic, offset of the first record not yet delivered
RECORD = struct.Struct(">II")  # body length, crc32 of the body
BODY = struct.Struct(">H16s")  # run id length, key; then the run id, then the payload

_serials = itertools.count(1)


def memory_limit_setting() -> int:
    """The memory bound in bytes: ``RUNYARD_SPOOL_MEMORY_MB`` (0 or more), default 64 MB.

    >>> memory_limit_setting() == 64 * 2**20 or "RUNYARD_SPOOL_MEMORY_MB" in os.environ
    True
    """
    raw = os.environ.get(ENV_MEMORY_MB)
    if raw is None:
        return DEFAULT_MEMORY_MB * 2**20
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value >= 0) or value == math.inf:
        raise UserError(
            f"{ENV_MEMORY_MB}={raw!r} is not a number of megabytes (0 or more); "
            "fix or unset the variable"
        )
    return int(value * 2**20)


def default_spool_dir(server_url: str) -> str:
    """The spool folder of the server ``server_url``: ``<root>/<12 hex digits of its URL>``.

    The root is ``RUNYARD_SPOOL_DIR`` if set, else ``$XDG_CACHE_HOME/runyard/spool`` (else
    ``~/.cache/runyard/spool``). Each server has its own folder: a spool is only ever replayed
    to the server it was meant for. The folder is made (0700) when a batch is first spooled.

    >>> default_spool_dir("http://h:8600") == default_spool_dir("http://h:8600/")
    True
    """
    root = os.environ.get(ENV_SPOOL_DIR)
    if not root:
        cache = os.environ.get("XDG_CACHE_HOME", "")
        if not os.path.isabs(cache):
            cache = os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(cache, "runyard", "spool")
    digest = hashlib.sha256(server_url.rstrip("/").encode()).hexdigest()[:12]
    return os.path.join(os.path.abspath(root), digest)


def _make_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UserError(
            f"{path} is not a folder of yours; remove it, or point {ENV_SPOOL_DIR} elsewhere"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _record(run_id: str, key: str, payload: bytes) -> bytes:
    rid = run_id.encode()
    body = BODY.pack(len(rid), bytes.fromhex(key)) + rid + payload
    return RECORD.pack(len(body), zlib.crc32(body)) + body


def _parse_body(body: bytes) -> tuple[str, str, bytes]:
    n, raw_key = BODY.unpack_from(body)
    start = BODY.size + n
    return body[BODY.size : start].decode(), raw_key.hex(), body[start:]


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _read_record(fd: int, offset: int, file_end: int) -> tuple[str, int, tuple[str, str, bytes]]:
    """("ok", end, (run id, key, payload)), or ("truncated" | "damaged", offset, ...)."""
    head = _pread_all(fd, RECORD.size, offset)
    if len(head) < RECORD.size:
        return "truncated", offset, ("", "", b"")
    length, crc = RECORD.unpack(head)
    end = offset + RECORD.size + length
    if end > file_end:
        return "truncated", offset, ("", "", b"")
    body = _pread_all(fd, length, offset + RECORD.size)
    if len(body) < length or zlib.crc32(body) != crc or length < BODY.size:
        return "damaged", offset, ("", "", b"")
    try:
        return "ok", end, _parse_body(body)
    except (UnicodeDecodeError, struct.error):
        return "damaged", offset, ("", "", b"")


class _Spool:
    """One spool file, locked by its writer: a header, then append-only records."""

    def __init__(self, path: str, fd: int, end: int) -> None:
        self.path = path
        self.fd = fd
        self.end = end

    @classmethod
    def create(cls, folder: str, name: str) -> _Spool:
        _make_dir(folder)
        path = os.path.join(folder, name + SUFFIX)
        temp = os.path.join(folder, name + NEW_SUFFIX)
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _pwrite_all(fd, HEADER.pack(MAGIC, HEADER.size), 0)
            os.fsync(fd)
            os.rename(temp, path)  # only whole, locked spools carry the suffix sync looks for
        except BaseException:
            os.close(fd)
            _owners.remove(temp)
            raise
        _fsync_dir(folder)
        return cls(path, fd, HEADER.size)

    def append(self, records: list[bytes]) -> list[tuple[int, int]]:
        """Write ``records`` at the end and fsync; their (offset, end) in the file."""
        start = offset = self.end
        places = []
        for rec in records:
            places.append((offset, offset + len(rec)))
            offset += len(rec)
        try:
            _pwrite_all(self.fd, b"".join(records), start)
            os.fsync(self.fd)
        except OSError:
            try:
                os.ftruncate(self.fd, start)  # no half record before the next append
            except OSError:
                pass
            raise
        self.end = offset
        return places

    def read(self, offset: int, end: int, key: str) -> bytes:
        status, _, (_, found, payload) = _read_record(self.fd, offset, end)
        if status != "ok" or found != key:
            raise StoreError(f"the spool {self.path} is damaged at byte {offset}")
        return payload

    def delivered(self, end: int) -> None:
        try:  # no fsync: a lost update only re-sends batches whose keys the server skips
            _pwrite_all(self.fd, struct.pack(">Q", end), len(MAGIC))
        except OSError:
            pass

    def remove(self) -> None:
        _owners.remove(self.path)
        self.release()

    def release(self) -> None:
        """Close the file: its lock goes, and ``runyard sync`` may replay what it holds."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Batch:
    __slots__ = ("end", "key", "offset", "payload", "run_id", "size")

    def __init__(self, run_id: str, key: str, payload: bytes) -> None:
        self.run_id = run_id
        self.key = key
        self.payload: bytes | None = payload  # None once it is in the spool
        self.size = len(payload)
        self.offset = 0
        self.end = 0


class Outbox:
    """Batches for one server, delivered in order, kept in memory then a spool meanwhile.

    ``send(run_id, key, payload)`` delivers one batch or raises: ``ServerUnreachable`` when
    the server cannot be reached (tried again later; any exception that is not a
    ``RunyardError`` is taken the same way), any other ``RunyardError`` when the server
    refused the batch (never tried again). See the module docstring for the contract.

        >>> import tempfile
        >>> outbox = Outbox(lambda run, key, data: None, tempfile.mkdtemp(), memory_limit=0)
        >>> outbox.put("run-1", b"batch"); outbox.drain(1.0)
        True
        >>> outbox.close()
    """

    def __init__(
        self,
        send: Send,
        spool_dir: str,
        *,
        memory_limit: int | None = None,
        label: str = "",
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        if memory_limit is None:
            memory_limit = memory_limit_setting()
        elif memory_limit < 0:
            raise UserError(f"memory_limit must be 0 or more bytes, not {memory_limit}")
        self.send = send
        self.spool_dir = spool_dir
        self.memory_limit = memory_limit
        self.label = label
        self.max_backoff = max_backoff
        self._serial = next(_serials)
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._queue: deque[_Batch] = deque()
        self._memory_bytes = 0
        self._spooled = 0  # batches of the queue that are in the spool
        self._spool: _Spool | None = None
        self._segment = 0
        self._thread: threading.Thread | None = None
        self._refused: list[tuple[str, str, RunyardError]] = []
        self._closed = False
        self._spool_at_once = False  # at exit: a batch that becomes pending is spooled
        self._warned = False

    # -- what the caller sees ------------------------------------------------------------

    def put(self, run_id: str, payload: bytes) -> None:
        """Deliver the batch now if nothing is pending, else queue it behind the others.

        Raises a refusal of the server (this batch's, or an earlier one of ``run_id``); the
        batch is then not taken. Never raises because the server cannot be reached.
        """
        with self._lock:
            self._raise_refusal(run_id)
            batch = _Batch(run_id, uuid.uuid4().hex, payload)
            if self._queue:
                self._keep(batch)
                return
        try:
            self.send(run_id, batch.key, payload)
        except ServerUnreachable:
            pass
        except RunyardError:
            raise  # refused: not stored, not kept
        except Exception:
            pass  # the transport failed, not the batch: kept, tried again
        except BaseException as exc:  # Ctrl-C: maybe stored; kept, and the key dedups
            with self._lock:
                self._keep(batch)
            mark_stored(exc)  # the caller must not keep the points for another attempt
            raise
        else:
            return
        with self._lock:
            self._keep(batch)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every pending batch is delivered (``timeout`` seconds at most); True
        if none is pending. Tries at once (no backoff wait). Raises a background refusal
        that was not reported yet (one time)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._queue and not self._closed:
                self._start_sender()
                self._wake.set()
            while self._queue and not self._closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            self._raise_refusal(None)
            return not self._queue

    def persist(self) -> None:
        """Write every batch pending in memory to the spool (fsynced): the process may end
        now without losing any. StoreError if the spool cannot be written (they stay in
        memory)."""
        with self._lock:
            if self._count_memory():
                try:
                    self._spill()
                except OSError as exc:
                    raise StoreError(
                        f"{self._count_memory()} metric batches for {self.label or 'the server'}"
                        f" could not be written to the spool in {self.spool_dir}: {exc}"
                    ) from exc

    def pending(self) -> int:
        """How many batches are not delivered yet (in memory, in the spool, being sent)."""
        with self._lock:
            return len(self._queue)

    @property
    def memory_bytes(self) -> int:
        """Payload bytes of the pending batches held in memory."""
        return self._memory_bytes

    @property
    def spool_path(self) -> str | None:
        """The spool file this outbox writes, if it has one now."""
        spool = self._spool
        return None if spool is None else spool.path

    def close(self) -> None:
        """Stop the background sender; what is pending stays in the spool (persisted here)
        for ``runyard sync``. A ``put`` after ``close`` still delivers or spools its batch."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._count_memory():
                    self._spill()
            except OSError as exc:
                print(
                    f"runyard: {self._count_memory()} metric batches for "
                    f"{self.label or 'the server'} are lost: the spool could not be written "
                    f"in {self.spool_dir}: {exc}",
                    file=sys.__stderr__,
                )
            self._closed = True
            self._queue.clear()
            self._memory_bytes = self._spooled = 0
            if self._spool is not None:
                self._spool.release()
                self._spool = None
            self._wake.set()
            self._changed.notify_all()
        _live.discard(self)

    # -- inside (the lock is held) ---------------------------------------------------------

    def _raise_refusal(self, run_id: str | None) -> None:
        for i, (refused_run, _key, exc) in enumerate(self._refused):
            if run_id is None or refused_run == run_id:
                del self._refused[i]
                exc.runyard_earlier_batch = True  # type: ignore[attr-defined]
                raise exc

    def _count_memory(self) -> int:
        return sum(1 for b in self._queue if b.payload is not None)

    def _keep(self, batch: _Batch) -> None:
        """Make ``batch`` pending: in memory while it fits and nothing is spooled."""
        self._queue.append(batch)
        self._memory_bytes += batch.size
        if (
            self._closed
            or self._spool_at_once
            or self._spooled
            or self._memory_bytes > self.memory_limit
        ):
            try:
                self._spill()
            except OSError as exc:
                if self._closed:  # nobody would send it from memory: the caller keeps it
                    self._queue.pop()
                    self._memory_bytes -= batch.size
                    raise StoreError(
                        f"a metric batch could not be written to the spool in "
                        f"{self.spool_dir}: {exc}"
                    ) from exc
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"runyard could not write the spool in {self.spool_dir} ({exc}); "
                        f"{self._memory_bytes / 2**20:.1f} MB of metrics wait in memory",
                        RuntimeWarning,
                        stacklevel=3,
                    )
        if self._closed:  # nobody sends any more: the spool is for `runyard sync`
            self._queue.clear()
            self._memory_bytes = self._spooled = 0
            if self._spool is not None:
                self._spool.release()
                self._spool = None
        else:
            self._start_sender()

    def _spill(self) -> None:
        """Move every batch held in memory, in order, to the end of the spool."""
        moving = [b for b in self._queue if b.payload is not None]
        if not moving:
            return
        if self._spool is None:
            self._segment += 1
            try:
                name = _owners.process_name()
            except ProcessLookupError:  # pragma: no cover - /proc hidden: the lock still tells
                name = f"{_owners.host_key()}-{os.getpid()}-0"
            name = f"{name}.{self._serial}.{self._segment:06d}"
            self._spool = _Spool.create(self.spool_dir, name)
        records = [_record(b.run_id, b.key, b.payload) for b in moving if b.payload is not None]
        places = self._spool.append(records)
        for batch, (offset, end) in zip(moving, places, strict=True):
            batch.payload = None
            batch.offset, batch.end = offset, end
            self._memory_bytes -= batch.size
        self._spooled += len(moving)

    def _start_sender(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._send_pending, name=f"runyard-outbox-{self._serial}", daemon=True
            )
            self._thread.start()

    def _done(self, batch: _Batch) -> None:
        """``batch`` left (delivered or refused): take it off the queue and the spool."""
        if not self._queue or self._queue[0] is not batch:
            return  # closed, or forked, meanwhile
        self._queue.popleft()
        if batch.payload is not None:
            self._memory_bytes -= batch.size
        elif self._spool is not None:
            self._spooled -= 1
            self._spool.delivered(batch.end)
            if not self._spooled:
                self._spool.remove()  # all of it delivered
                self._spool = None
        self._changed.notify_all()

    # -- the background sender -----------------------------------------------------------------

    def _send_pending(self) -> None:
        failures = 0
        me = threading.current_thread()
        while True:
            with self._lock:
                if self._thread is not me:
                    return  # forked, or replaced
                if self._closed or not self._queue:
                    self._thread = None
                    self._changed.notify_all()
                    return
                batch = self._queue[0]
                payload = batch.payload
                if payload is None and self._spool is not None:
                    try:
                        payload = self._spool.read(batch.offset, batch.end, batch.key)
                    except (OSError, StoreError) as exc:
                        problem = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                        self._refused.append((batch.run_id, batch.key, problem))
                        self._done(batch)
                        continue
                if payload is None:  # pragma: no cover - a spooled batch without its spool
                    self._done(batch)
                    continue
            try:
                self.send(batch.run_id, batch.key, payload)
            except ServerUnreachable:
                pass
            except RunyardError as exc:
                with self._lock:
                    if self._queue and self._queue[0] is batch:
                        self._refused.append((batch.run_id, batch.key, exc))
                    self._done(batch)
                failures = 0
                continue
            except Exception:
                pass  # the transport failed, not the batch
            except BaseException:  # pragma: no cover - SystemExit in a thread: stop sending
                with self._lock:
                    if self._thread is me:
                        self._thread = None
                return
            else:
                with self._lock:
                    self._done(batch)
                failures = 0
                continue
            failures += 1
            pause = min(self.max_backoff, 0.05 * 2**failures) * random.uniform(0.5, 1.0)
            if self._wake.wait(pause):
                self._wake.clear()
                failures = 0

    def _after_fork_in_child(self) -> None:
        spool = self._spool
        if spool is not None and spool.fd >= 0:
            try:  # a close, never an unlock: the lock is the parent's as well
                os.close(spool.fd)
            except OSError:
                pass
        self._reset()


def replay_spools(spool_dir: str, send: Send, *, log: Log = print) -> tuple[int, int]:
    """Send what the spools of ended processes in ``spool_dir`` still hold; (files, batches).

    Each spool's records go in order, with their keys (the server skips keys it has), from
    the first one not yet delivered; a spool is deleted once replayed. A batch the server
    refuses is moved to ``rejected/`` beside the spools; a record cut short by a crash
    mid-append is skipped. Spools of living writers are left alone. When the server
    cannot be reached, this reports what was done and raises ``ServerUnreachable``: the
    rest waits for the next replay.

        >>> import tempfile
        >>> replay_spools(tempfile.mkdtemp(), lambda run, key, data: None, log=print)
        (0, 0)
    """
    files = batches = 0
    try:
        names = sorted(os.listdir(spool_dir))
    except FileNotFoundError:
        return files, batches
    for name in names:
        path = os.path.join(spool_dir, name)
        if not name.endswith((SUFFIX, NEW_SUFFIX)):
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer lives (or another replay has it)
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue  # replaced meanwhile
            except FileNotFoundError:
                continue
            if name.endswith(NEW_SUFFIX):  # creation cut short: holds no record
                _owners.remove(path)
                continue
            try:
                batches += _replay_file(spool_dir, name, fd, send, log)
            except ServerUnreachable:
                log(
                    f"runyard sync: sent {batches} batches from {files} spool files; the "
                    f"server stopped answering: what is left waits in {spool_dir} for the "
                    "next sync"
                )
                raise
            _owners.remove(path)
            files += 1
        finally:
            os.close(fd)
    if files:
        log(f"runyard sync: sent {batches} batches from {files} spool files in {spool_dir}")
    return files, batches


def _replay_file(spool_dir: str, name: str, fd: int, send: Send, log: Log) -> int:
    """Send the undelivered records of one locked spool; how many were sent."""
    file_end = os.fstat(fd).st_size
    head = _pread_all(fd, HEADER.size, 0)
    if len(head) < HEADER.size or HEADER.unpack(head)[0] != MAGIC:
        _keep_rejected(spool_dir, name + ".damaged", _pread_all(fd, file_end, 0))
        log(f"runyard sync: {name} is not a spool file; kept in {REJECTED}/")
        return 0
    offset = max(HEADER.unpack(head)[1], HEADER.size)
    sent = 0
    while offset < file_end:
        status, end, (run_id, key, payload) = _read_record(fd, offset, file_end)
        if status == "truncated":
            log(
                f"runyard sync: {name} ends with a batch cut short (its writer died while "
                f"writing it): {file_end - offset} bytes skipped"
            )
            break
        if status == "damaged":
            _keep_rejected(spool_dir, name + ".damaged", _pread_all(fd, file_end - offset, offset))
            log(
                f"runyard sync: {name} is damaged at byte {offset}; the rest of it is kept "
                f"in {REJECTED}/{name}.damaged"
            )
            break
        try:
            send(run_id, key, payload)
        except ServerUnreachable:
            raise
        except RunyardError as exc:
            _keep_rejected(spool_dir, name, _record(run_id, key, payload), records=True)
            log(
                f"runyard sync: the server refused a batch of run {run_id} from {name} "
                f"({exc}); it is kept in {REJECTED}/{name}"
            )
        else:
            sent += 1
        offset = end
        _pwrite_all(fd, struct.pack(">Q", offset), len(MAGIC))
    return sent


def _keep_rejected(spool_dir: str, name: str, data: bytes, records: bool = False) -> None:
    """Append ``data`` to ``rejected/<name>`` (a spool file itself when ``records``)."""
    folder = os.path.join(spool_dir, REJECTED)
    _make_dir(folder)
    fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if records and os.fstat(fd).st_size == 0:
            data = HEADER.pack(MAGIC, HEADER.size) + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


_live: weakref.WeakSet[Outbox] = weakref.WeakSet()


def _persist_at_exit() -> None:
    """Give pending batches a moment to go out, then spool the rest; say what waits.

    Metric buffers flush after this hook (it was registered later): a batch that becomes
    pending from now on is spooled at once.
    """
    for outbox in list(_live):
        with outbox._lock:
            outbox._spool_at_once = True
        try:
            outbox.drain(EXIT_DRAIN_SECONDS if outbox.pending() else 0)
        except RunyardError as exc:
            print(f"runyard: a metric batch was refused by the server: {exc}", file=sys.__stderr__)
        try:
            outbox.persist()
        except StoreError as exc:
            print(f"runyard: {exc}", file=sys.__stderr__)
        for run_id, _key, refusal in outbox._refused:
            print(
                f"runyard: a metric batch of run {run_id} was refused by the server: {refusal}",
                file=sys.__stderr__,
            )
        outbox._refused.clear()
        waiting = outbox.pending()
        if waiting:
            print(
                f"runyard: {waiting} metric batches could not reach {outbox.label or 'the server'}"
                f" yet; they wait in {outbox.spool_path}: `runyard sync` sends them",
                file=sys.__stderr__,
            )


def _after_fork_in_child() -> None:
    for outbox in list(_live):
        outbox._after_fork_in_child()


atexit.register(_persist_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
