"""A thin seam over the two SQL databases: one connection, retries, placeholders.

SQL is written once with ``?`` placeholders; :class:`PostgresDatabase` rewrites them.
Every write goes through :meth:`Database.write`, one transaction per call, which

- retries when another process holds the lock, so "database is locked" never reaches a user;
- on PostgreSQL, runs again on a fresh connection when the connection was lost before
  COMMIT (the server rolled the transaction back), and when it was lost during COMMIT asks
  the server whether the transaction committed (``txid_status``) instead of guessing: a
  lost connection never duplicates or loses a write;
- never leaves a connection inside an open transaction: a failed write is rolled back, and
  a connection that cannot roll back is thrown away.

A forked child never touches its parent's connection or lock: it gets its own of both.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from ...errors import RunyardError, StoreError, UserError, mark_stored
from .. import _without_password

RETRY_SECONDS = 120.0
LOST_CONNECTION_RETRIES = 3
T = TypeVar("T")
_databases: weakref.WeakSet[Database] = weakref.WeakSet()
_inherited: list[Any] = []  # a parent's connections, kept unclosed in a forked child


def clock_sql(dialect: str) -> str:
    """SQL for the database's clock in Unix seconds (one clock for every machine)."""
    if dialect == "postgresql":
        return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    return "((julianday('now') - 2440587.5) * 86400.0)"


class Database:
    """Base for both dialects: one connection per process, guarded by a lock."""

    dialect = "abstract"
    where = "the database"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn: Any = None
        _databases.add(self)

    # -- subclass hooks -------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _is_retryable(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _transaction(self, conn: Any, body: Callable[[SqlCursor], T]) -> T:
        """Run ``body`` in one transaction on ``conn`` and commit it."""
        raise NotImplementedError

    def _is_lost(self, exc: BaseException) -> bool:
        """Did ``exc`` come from a connection that is gone (so nothing was applied)?"""
        return False

    def _storage_error(self, exc: BaseException) -> RunyardError | None:
        """A clear error for what the storage itself refused (disk full, corrupt file)."""
        return None

    def sql(self, text: str) -> str:
        return text

    def in_list(self, expression: str) -> str:
        """``expression`` is one of the values of the ``list_param`` that follows."""
        return f"{expression} IN (SELECT value FROM json_each(?))"

    def list_param(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    def value_equals(self, column: str, value: str) -> tuple[str, list[Any]]:
        """``column = value`` written so that the (key, value) index of tags and properties
        answers it."""
        return f"{column} = ?", [value]

    def like(self, expression: str, pattern: str, case_sensitive: bool) -> tuple[str, list[Any]]:
        """SQL LIKE (``%`` any run of characters, ``_`` one), with its parameter. SQLite's
        LIKE ignores case (ASCII only), so a case-sensitive one is a GLOB."""
        if not case_sensitive:
            return f"{expression} LIKE ?", [pattern]
        special = {"*": "[*]", "?": "[?]", "[": "[[]", "%": "*", "_": "?"}
        return f"{expression} GLOB ?", ["".join(special.get(c, c) for c in pattern)]

    # -- shared ----------------------------------------------------------
    def connection(self) -> Any:
        if self._pid != os.getpid():
            self._after_fork()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _after_fork(self) -> None:
        """In a forked child: the parent's connection and lock are not ours to use."""
        if self._conn is not None:
            _inherited.append(self._conn)  # closing it could end the parent's session
        self._conn = None
        self._lock = threading.RLock()
        self._pid = os.getpid()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def write(self, body: Callable[[SqlCursor], T]) -> T:
        """Run ``body(cursor)`` in one write transaction and return its result.

        When another process holds the lock, or the connection was lost before COMMIT, the
        whole body runs again, so it must not have side effects outside the database (or
        make them repeatable).
        """
        return self._retrying(lambda conn: self._transaction(conn, body))

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._retrying(lambda conn: self._read(conn, sql, params))

    def _retrying(self, attempt: Callable[[Any], T]) -> T:
        """``attempt(connection)`` again while the database is locked (for up to two
        minutes) or the connection is lost (a few times, each on a new connection)."""
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.002
        lost = 0
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            while True:
                try:
                    return attempt(self.connection())
                except BaseException as exc:
                    if self._is_lost(exc):
                        self._drop_connection()
                        lost += 1
                        if lost <= LOST_CONNECTION_RETRIES:
                            continue
                    elif self._is_retryable(exc) and time.monotonic() < deadline:
                        time.sleep(delay * (1 + random.random()))
                        delay = min(delay * 2, 0.25)
                        continue
                    self._raise(exc)

    def _cursor(self, conn: Any) -> Any:
        return conn.cursor()

    def _read(self, conn: Any, sql: str, params: Sequence[Any]) -> list[Any]:
        cur = self._cursor(conn)
        try:
            if params:
                cur.execute(self.sql(sql), params)
            else:
                cur.execute(sql)
            return list(cur.fetchall())
        finally:
            cur.close()

    def _raise(self, exc: BaseException) -> NoReturn:
        if not isinstance(exc, Exception) or isinstance(exc, RunyardError):
            raise exc
        cause = exc.__cause__ if isinstance(exc, _Retry | _LostUncommitted) else exc
        clear = self._storage_error(cause or exc)
        if clear is not None:
            raise clear from exc
        if isinstance(cause, UnicodeEncodeError):
            raise UserError(
                f"a text value cannot be stored: {cause.reason} in {cause.object!r}; "
                "remove lone surrogates from names, tags and properties"
            ) from exc
        raise StoreError(f"{self.dialect} store error at {self.where}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


_held_over_fork: list[Database] = []


def _before_fork() -> None:
    """Let no write be half-done in another thread when the process forks.

    A SQLite connection forked mid-transaction leaves its locks in the child's copy of
    SQLite's per-file state, and any new connection of the child would wait on them forever.
    """
    for db in list(_databases):
        if db._pid == os.getpid():
            db._lock.acquire()
            _held_over_fork.append(db)


def _after_fork_in_parent() -> None:
    while _held_over_fork:
        _held_over_fork.pop()._lock.release()


def _after_fork_in_child() -> None:
    _held_over_fork.clear()
    for db in list(_databases):
        db._after_fork()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


_INTERRUPTS = (KeyboardInterrupt, SystemExit)


class _Retry(Exception):
    """Raised inside a transaction body when the database reported a lock conflict."""


class _LostUncommitted(Exception):
    """The connection was lost during COMMIT and the server says it rolled the transaction
    back: nothing was applied, so the write runs again (on a new connection)."""


class SqlCursor:
    """A cursor whose statements use ``?`` placeholders on every dialect."""

    def __init__(self, db: Database, cur: Any) -> None:
        self._db = db
        self._cur = cur
        self.dialect = db.dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            if params:
                self._cur.execute(self._db.sql(sql), params)
            else:
                self._cur.execute(sql)
            if self._cur.description is None:
                return []
            return list(self._cur.fetchall())
        except Exception as exc:
            if self._db._is_retryable(exc):
                raise _Retry() from exc
            raise

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            self._cur.executemany(self._db.sql(sql), rows)
        except Exception as exc:
            if self._db._is_retryable(exc):
                raise _Retry() from exc
            raise


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.where = path

    def _connect(self) -> sqlite3.Connection:
        if os.path.isdir(self.path):
            raise StoreError(
                f"{self.path} is a folder, not a runyard database file: move it away, or "
                "open the workspace folder that holds it"
            )
        try:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            for _ in range(200):
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:  # another process is creating the file
                    if not self._is_retryable(exc):
                        raise
                    time.sleep(0.01)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._storage_error(exc) or StoreError(
                f"cannot open the runyard database {self.where}: {exc}"
            ) from exc
        return conn

    def _storage_error(self, exc: BaseException) -> RunyardError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        text = str(exc).lower()
        if "full" in text:
            return StoreError(
                f"the disk holding {self.where} is full ({exc}); nothing of this write was "
                "stored: free some space and try again"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StoreError(
                f"{self.where} is not a usable runyard database ({exc}): it is corrupt or "
                "truncated. Restore it from a backup, or move it away to start an empty "
                "workspace there"
            )
        if "unable to open" in text or "readonly" in text or "read-only" in text:
            return StoreError(
                f"cannot write the runyard database {self.where} ({exc}): check that its "
                "folder exists and that you may write to it"
            )
        return None

    def _is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, _Retry):
            return True
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        text = str(exc).lower()
        return "locked" in text or "busy" in text

    def _transaction(self, conn: sqlite3.Connection, body: Callable[[SqlCursor], T]) -> T:
        if conn.in_transaction:  # never expected; never build on a stray transaction
            conn.execute("ROLLBACK")
        cur = conn.cursor()
        committing = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = body(SqlCursor(self, cur))
            committing = True
            while True:
                try:
                    conn.execute("COMMIT")
                    return result
                except sqlite3.OperationalError as exc:
                    if not self._is_retryable(exc):
                        raise
                    time.sleep(0.005)
        except BaseException as exc:
            if committing and not conn.in_transaction:
                mark_stored(exc)  # interrupted after COMMIT returned
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except Exception:
                self._drop_connection()
            raise
        finally:
            cur.close()


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri
        self.where = _without_password(uri)

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError(
                "a postgresql:// workspace needs psycopg: pip install 'runyard[postgres]'"
            ) from exc
        try:
            conn = psycopg.connect(self.uri, autocommit=True)
            # JIT compiles a query the planner thinks costly for ~0.3 s before it runs: a
            # sort of 100,000 runs by a metric took 0.5 s instead of 0.2 s. runyard's
            # queries are short; none gains from it.
            conn.execute("SET jit = off")
            return conn
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {_without_password(self.uri)}: {exc}"
            ) from exc

    def connection(self) -> Any:
        conn = super().connection()
        if conn.closed or conn.broken:
            self._drop_connection()
            conn = super().connection()
        return conn

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def in_list(self, expression: str) -> str:
        return f"{expression} = ANY(?)"

    def list_param(self, values: Sequence[Any]) -> Any:
        return list(values)

    def value_equals(self, column: str, value: str) -> tuple[str, list[Any]]:
        # the index holds md5(value): any length fits it (schema version 7)
        return f"md5({column}) = md5(CAST(? AS TEXT)) AND {column} = ?", [value, value]

    def like(self, expression: str, pattern: str, case_sensitive: bool) -> tuple[str, list[Any]]:
        # a backslash is a literal character, as in SQLite's LIKE and GLOB
        return f"{expression} {'LIKE' if case_sensitive else 'ILIKE'} ? ESCAPE ''", [pattern]

    def _cursor(self, conn: Any) -> Any:
        return conn.cursor(binary=True)  # bytea without hex encoding: 5x faster reads

    def _is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, _Retry):
            return True
        import psycopg.errors as pe

        return isinstance(exc, pe.SerializationFailure | pe.DeadlockDetected)

    def _is_lost(self, exc: BaseException) -> bool:
        import psycopg
        import psycopg.errors as pe

        gone = (_LostUncommitted, pe.AdminShutdown, pe.CrashShutdown, pe.IdleSessionTimeout)
        if isinstance(exc, gone):
            return True
        conn = self._conn
        return isinstance(exc, psycopg.OperationalError) and (
            conn is None or conn.closed or conn.broken
        )

    def _storage_error(self, exc: BaseException) -> RunyardError | None:
        import psycopg.errors as pe

        if isinstance(exc, pe.DiskFull):
            return StoreError(f"the PostgreSQL server is out of disk space: {exc}")
        if isinstance(exc, pe.DataError):  # NUL in text, a number out of range...
            return UserError(f"a value cannot be stored in PostgreSQL: {exc}")
        return None

    def _transaction(self, conn: Any, body: Callable[[SqlCursor], T]) -> T:
        from psycopg.pq import TransactionStatus

        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")  # never build on a stray transaction
        cur = conn.cursor()
        committing = False
        xid = None
        backend = conn.info.backend_pid
        try:
            cur.execute("BEGIN; SELECT txid_current()")  # one round trip
            cur.nextset()
            xid = cur.fetchone()[0]
            result = body(SqlCursor(self, cur))
            committing = True
            cur.execute("COMMIT")
            return result
        except BaseException as exc:
            if committing and xid is not None and isinstance(exc, _INTERRUPTS):
                # Ctrl-C during COMMIT: psycopg waited for the answer; was it stored?
                if self._outcome(xid, backend) == "committed":
                    mark_stored(exc)
                raise
            if committing and xid is not None and self._is_lost(exc):
                if self._outcome(xid, backend) == "committed":
                    return result
                # rolled back by the server: run it again. Say so explicitly, because by
                # now the connection the error came from has been replaced by a healthy one
                raise _LostUncommitted() from exc
            if not (conn.closed or conn.broken):
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    self._drop_connection()
            raise
        finally:
            if not cur.closed:
                cur.close()

    def _outcome(self, xid: int, backend: int) -> str:
        """Whether the transaction ``xid``, whose COMMIT got no answer, committed.

        While the server says "in progress", the session that ran it (process ``backend``)
        may not have noticed that its client is gone (a network cut leaves it waiting for a
        COMMIT that will never come, holding its locks); it is ended, so that the server
        rolls the transaction back, unless the COMMIT got there first.
        """
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            self._drop_connection()
            try:
                conn = self.connection()
                rows = self._read(conn, "SELECT txid_status(?)", (xid,))
                status = rows[0][0]
                if status in ("committed", "aborted"):
                    return str(status)
                self._read(  # only the session still inside this very transaction
                    conn,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid = ? AND backend_xid::text = ?",
                    (backend, str(xid % 2**32)),
                )
            except Exception:
                pass  # the server is still unreachable: ask again
            if time.monotonic() > deadline:
                raise StoreError(
                    f"the connection to PostgreSQL at {self.where} was lost during COMMIT and "
                    f"the server could not say for {RETRY_SECONDS:g} s whether transaction "
                    f"{xid} was stored; check the run before writing it again"
                )
            time.sleep(0.2)
