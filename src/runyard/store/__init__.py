"""Stores: where runs, metrics and artifact records are kept.

``open_store(uri)`` is the one place that decides which implementation a URI gets.
"""

from __future__ import annotations

import os

from .._folders import make_folder
from ..errors import NotFound, StoreError, UserError
from .base import Store, iter_runs

__all__ = ["Store", "iter_runs", "open_store", "workspace_paths"]


def workspace_paths(uri: str) -> tuple[str, str | None]:
    """Return (database URI or file, default artifact directory) for a workspace URI."""
    if "\x00" in uri:  # no path, URI or connection string can hold it
        raise UserError(f"workspace URI {uri!r} contains a NUL character; remove it")
    if uri.startswith(("postgresql://", "postgres://")):
        return uri, None
    if uri.startswith(("http://", "https://")):
        raise UserError(
            f"{uri!r} names a runyard server; the tracking server is not part of this "
            "release yet: use a local path or a postgresql:// URI"
        )
    if uri.startswith("sqlite:"):
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
        path = uri.removeprefix("sqlite:").removeprefix("//").removeprefix("/")
        if not path:
            raise UserError("a sqlite: URI needs a file: sqlite:////abs/path/runyard.db")
        path = os.path.abspath(os.path.expanduser(path))
        return path, os.path.join(os.path.dirname(path), "artifacts")
    if "://" in uri:
        raise UserError(
            f"unsupported workspace URI {uri!r}: use a directory path, sqlite:///file.db "
            "or postgresql://user@host/db"
        )
    directory = os.path.abspath(os.path.expanduser(uri))
    return os.path.join(directory, "runyard.db"), os.path.join(directory, "artifacts")


def open_store(uri: str, create: bool = True) -> Store:
    """Open the store a workspace URI names, creating it if needed unless ``create=False``.

    With ``create=False`` a workspace that does not exist yet (no database file, or a
    PostgreSQL database without runyard's tables) is a NotFound and nothing is written.
    """
    from .sql import SqlStore
    from .sql.database import PostgresDatabase, SqliteDatabase

    target, artifacts = workspace_paths(uri)
    if target.startswith(("postgresql://", "postgres://")):
        database = PostgresDatabase(target)
        if (
            not create
            and not database.read("SELECT to_regclass('runyard_schema') IS NOT NULL")[0][0]
        ):
            database.close()
            raise NotFound(
                f"no runyard workspace in {_without_password(uri)}: the database has no runyard "
                "tables; create one with runyard init --workspace URI --artifacts DIR"
            )
        return SqlStore(database, uri)
    if not create and not os.path.exists(target):
        raise NotFound(
            f"no runyard workspace at {uri} ({target} does not exist); check the path, or "
            f"create one with runyard init --workspace {uri}"
        )
    directory = os.path.dirname(target)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UserError(f"cannot use {directory!r} as a workspace: it is a file, not a folder")
    make_folder(directory, "workspace")
    _refuse_emptied_database(target, artifacts)
    return SqlStore(SqliteDatabase(target), uri)


def _refuse_emptied_database(target: str, artifacts: str | None) -> None:
    """An empty database file beside the files of runs was truncated (a copy onto a full
    disk, a sync gone wrong): SQLite would take it for a new database and the workspace
    would silently start over, empty. A new workspace's file is empty only before its
    first write, when no run has files yet."""
    try:
        if os.path.getsize(target) != 0 or artifacts is None:
            return
        runs = os.listdir(os.path.join(artifacts, "runs"))
    except OSError:
        return
    if runs:
        raise StoreError(
            f"{target} is empty, but {artifacts} holds the files of {len(runs)} run(s): the "
            "database was truncated. Restore it from a backup, or move the workspace's "
            "runyard.db and artifacts folder away to start an empty workspace there"
        )


def _without_password(uri: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
