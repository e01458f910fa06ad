"""Stores: where runs, metrics and artifact records are kept.

``open_store(uri)`` is the one place that decides which implementation a URI gets.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple

from .._folders import make_folder
from ..errors import NotFound, StoreError, UserError
from .base import Store, iter_runs

if TYPE_CHECKING:
    from ..artifacts.base import ArtifactStore

__all__ = [
    "Store",
    "WorkspaceStores",
    "iter_runs",
    "open_store",
    "open_workspace",
    "workspace_paths",
]


class WorkspaceStores(NamedTuple):
    """What a Workspace holds: its Store, its ArtifactStore, the artifact location passed
    on to script runs, and this machine's own folder for it (slots, environments)."""

    store: Store
    artifacts: ArtifactStore
    artifacts_root: str
    local_root: str


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def open_workspace(uri: str, artifacts: str | None, create: bool = True) -> WorkspaceStores:
    """Open a workspace's stores: the one place that picks the implementations.

    A folder, ``sqlite:`` or ``postgresql://`` URI gets the embedded SqlStore and a local
    artifact folder (``artifacts``, or the workspace's default) or, for an
    ``s3://bucket/prefix`` ``artifacts``, an S3 bucket; an ``http(s)://`` URI a RestStore
    and the server's artifacts.
    """
    if is_server_uri(uri):
        from ..artifacts.remote import RemoteArtifactStore
        from .rest import RestStore

        rest = RestStore(uri)
        if not create:
            try:
                rest.list_experiments()  # a wrong URL or token fails here, not later
            except BaseException:
                rest.close()
                raise
        return WorkspaceStores(rest, RemoteArtifactStore(rest._http), uri, _server_folder(uri))
    from ..artifacts.local import LocalArtifactStore
    from ..workspace import ENV_ARTIFACTS

    database, default_artifacts = workspace_paths(uri)
    artifacts = artifacts or default_artifacts
    if artifacts is None:
        raise UserError(
            "a PostgreSQL workspace needs a directory or an s3://bucket/prefix for artifacts: "
            "Workspace(uri, artifacts='/shared/runyard-artifacts'), an \"artifacts\" key in "
            f".runyard/config.json, or the {ENV_ARTIFACTS} environment variable"
        )
    if artifacts.startswith("s3://"):
        return _with_bucket(uri, database, artifacts, create)
    if "://" in artifacts:
        raise UserError(
            f"unsupported artifact location {artifacts!r}: give a folder, or an "
            "s3://bucket/prefix of S3-compatible storage"
        )
    root = os.path.abspath(os.path.expanduser(artifacts))
    store = open_store(uri, create=create)
    try:
        if not create and not os.path.isdir(root):
            raise NotFound(
                f"the artifact folder {root} of workspace {uri} does not exist; give the right "
                f'one (--artifacts, {ENV_ARTIFACTS} or the "artifacts" key of '
                ".runyard/config.json)"
            )
        local = root if "://" in database else os.path.dirname(database)
        return WorkspaceStores(store, LocalArtifactStore(root), root, local)
    except BaseException:
        store.close()
        raise


def _with_bucket(uri: str, database: str, artifacts: str, create: bool) -> WorkspaceStores:
    """A database workspace whose files are in an S3-compatible bucket. The bucket is
    checked before the database is opened (a wrong bucket or key fails first)."""
    from ..artifacts.s3 import S3ArtifactStore

    bucket = S3ArtifactStore(artifacts)
    store = open_store(uri, create=create)
    local = _server_folder(uri, "workspaces") if "://" in database else os.path.dirname(database)
    return WorkspaceStores(store, bucket, bucket.root, local)


def _server_folder(uri: str, kind: str = "servers") -> str:
    """This machine's folder for a workspace that has none here (a server's, or a database's
    whose files are in a bucket): local slots, built environments."""
    import hashlib

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(base, "runyard", kind, digest)


def workspace_paths(uri: str) -> tuple[str, str | None]:
    """Return (database URI or file, default artifact directory) for a workspace URI."""
    if "\x00" in uri:  # no path, URI or connection string can hold it
        raise UserError(f"workspace URI {uri!r} contains a NUL character; remove it")
    if uri.startswith(("postgresql://", "postgres://")):
        return uri, None
    if is_server_uri(uri):
        return uri, None
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
    if is_server_uri(uri):
        from .rest import RestStore

        return RestStore(uri)
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
