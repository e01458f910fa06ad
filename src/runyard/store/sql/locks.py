"""Locks that every process and every server of one workspace database take turns on.

Several ``runyard serve`` processes (on several machines) may append to one run's growing
log at once: a client's retry reaches another server while the first still writes. A log
in a bucket is rewritten whole on each append, so the later of two such writes would drop
the other's bytes. :meth:`LocksMixin.run_file_lock` makes them take turns.

On PostgreSQL the lock is a session advisory lock of the server's connection, asked for
without blocking (the connection serves this process's other requests meanwhile). On
SQLite, whose processes share one machine, it is an ``flock`` on one of 256 files beside
the database.

    >>> with store.run_file_lock(run_id, "user_logs/std_log.txt"):  # doctest: +SKIP
    ...     append()
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import StoreError

if TYPE_CHECKING:
    from .database import Database

LOCK_SECONDS = 120.0  # a holder that keeps a lock longer than this is taken for stuck
_NAMESPACE = 7460319  # of runyard's advisory locks on run files (7460318: its others)
_STRIPES = 256


class LocksMixin:
    """The cross-process locks of :class:`~runyard.store.sql.SqlStore`."""

    db: Database

    @contextlib.contextmanager
    def run_file_lock(self, run_id: str, path: str) -> Iterator[None]:
        """Hold the lock of the file ``path`` of run ``run_id`` against every other process
        of this database; a StoreError after ``LOCK_SECONDS`` of waiting.

        Per process the lock is not exclusive between threads: callers order their own
        threads first (the server has a lock per log and process).
        """
        key = f"{run_id}/{path}"  # a run id holds no slash
        if self.db.dialect == "postgresql":
            with _advisory(self.db, key):
                yield
        else:
            with _flocked(self.db, key):
                yield


@contextlib.contextmanager
def _advisory(db: Database, key: str) -> Iterator[None]:
    take = f"SELECT pg_try_advisory_lock(hashtextextended(?, {_NAMESPACE}))"
    deadline = time.monotonic() + LOCK_SECONDS
    delay = 0.005
    while not db.read(take, (key,))[0][0]:
        if time.monotonic() > deadline:
            raise _stuck(key)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    try:
        yield
    finally:
        # a connection lost meanwhile took the lock with it: the unlock then finds none
        db.read(f"SELECT pg_advisory_unlock(hashtextextended(?, {_NAMESPACE}))", (key,))


@contextlib.contextmanager
def _flocked(db: Database, key: str) -> Iterator[None]:
    where = getattr(db, "path", None)
    if not isinstance(where, str):  # pragma: no cover - every SQLite database has a file
        yield
        return
    folder = f"{where}-locks"
    os.makedirs(folder, mode=0o700, exist_ok=True)
    stripe = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:2]
    fd = os.open(os.path.join(folder, stripe), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + LOCK_SECONDS
        delay = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _stuck(key) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


def _stuck(key: str) -> StoreError:
    run_id, _, path = key.partition("/")
    return StoreError(
        f"{path!r} of run {run_id} has been locked by another writer for {LOCK_SECONDS:g} s; "
        "try again later"
    )
