"""A thin seam over the two SQL databases: one connection, retries, placeholders.

SQL is written once with ``?`` placeholders; :class:`PostgresDatabase` rewrites them.
Every write goes through :meth:`Database.transaction`, which retries when another
process holds the lock, so "database is locked" never reaches a user.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from ...errors import RunyardError, StoreError

RETRY_SECONDS = 120.0
T = TypeVar("T")


class Database:
    """Base for both dialects: one connection per process, guarded by a lock."""

    dialect = "abstract"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn: Any = None

    # -- subclass hooks -------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _is_retryable(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _begin(self, conn: Any) -> Any:
        raise NotImplementedError

    def _commit(self, conn: Any, cur: Any) -> None:
        raise NotImplementedError

    def _rollback(self, conn: Any, cur: Any) -> None:
        raise NotImplementedError

    def sql(self, text: str) -> str:
        return text

    # -- shared ----------------------------------------------------------
    def connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._connect()
            self._pid = os.getpid()
        return self._conn

    def write(self, body: Callable[[SqlCursor], T]) -> T:
        """Run ``body(cursor)`` in one write transaction and return its result.

        When another process holds the lock the whole body runs again, so it must not
        have side effects outside the database.
        """
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.002
        with self._lock:
            while True:
                conn = self.connection()
                cur = None
                try:
                    cur = self._begin(conn)
                    result = body(SqlCursor(self, cur))
                    self._commit(conn, cur)
                    return result
                except BaseException as exc:
                    if cur is not None:
                        self._rollback(conn, cur)
                    if self._is_retryable(exc) and time.monotonic() < deadline:
                        time.sleep(delay * (1 + random.random()))
                        delay = min(delay * 2, 0.25)
                        continue
                    self._raise(exc)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.002
        with self._lock:
            while True:
                try:
                    return self._read(self.connection(), sql, params)
                except Exception as exc:
                    if self._is_retryable(exc) and time.monotonic() < deadline:
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
        raise StoreError(f"{self.dialect} store error: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


class _Retry(Exception):
    """Raised inside a transaction body when the database reported a lock conflict."""


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

    def _connect(self) -> sqlite3.Connection:
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
        return conn

    def _is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, _Retry):
            return True
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        text = str(exc).lower()
        return "locked" in text or "busy" in text

    def _begin(self, conn: sqlite3.Connection) -> sqlite3.Cursor:
        conn.execute("BEGIN IMMEDIATE")
        return conn.cursor()

    def _commit(self, conn: sqlite3.Connection, cur: Any) -> None:
        while True:
            try:
                conn.execute("COMMIT")
                break
            except sqlite3.OperationalError as exc:
                if not self._is_retryable(exc):
                    raise
                time.sleep(0.005)
        cur.close()

    def _rollback(self, conn: sqlite3.Connection, cur: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        cur.close()


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError(
                "a postgresql:// workspace needs psycopg: pip install 'runyard[postgres]'"
            ) from exc
        try:
            return psycopg.connect(self.uri, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_redact(self.uri)}: {exc}") from exc

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def _cursor(self, conn: Any) -> Any:
        if conn.closed or conn.broken:
            self._conn = conn = self._connect()
        return conn.cursor(binary=True)  # bytea without hex encoding: 5x faster reads

    def _is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, _Retry):
            return True
        import psycopg.errors as pe

        return isinstance(exc, pe.SerializationFailure | pe.DeadlockDetected)

    def _begin(self, conn: Any) -> Any:
        if conn.closed or conn.broken:
            self._conn = conn = self._connect()
        conn.execute("BEGIN")
        return conn.cursor()

    def _commit(self, conn: Any, cur: Any) -> None:
        conn.execute("COMMIT")
        cur.close()

    def _rollback(self, conn: Any, cur: Any) -> None:
        if not conn.closed:
            conn.execute("ROLLBACK")
        cur.close()


def _redact(uri: str) -> str:
    """Hide a password in a connection URI before it goes into a message."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", uri)
