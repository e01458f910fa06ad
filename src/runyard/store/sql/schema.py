"""The schema, as an ordered list of migrations applied once per database."""

from __future__ import annotations

import time

from ...errors import StoreError
from .database import Database, SqlCursor, clock_sql

_TABLES = """
CREATE TABLE experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at {real} NOT NULL,
    archived_at {real},
    run_counter INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX experiments_active_name ON experiments (name) WHERE archived_at IS NULL;
CREATE TABLE experiment_tags (
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (experiment_id, key)
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES experiments (id),
    parent_id TEXT REFERENCES runs (id),
    root_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    name TEXT,
    display_name TEXT,
    description TEXT,
    type TEXT,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at {real} NOT NULL,
    started_at {real},
    ended_at {real},
    heartbeat_at {real},
    error TEXT,
    run_definition TEXT,
    snapshot_id TEXT,
    submitted_by TEXT
);
CREATE INDEX runs_by_experiment ON runs (experiment_id, created_at, number);
CREATE INDEX runs_by_parent ON runs (parent_id, created_at, number);
CREATE INDEX runs_by_root ON runs (root_id);
CREATE TABLE run_tags (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_tags_by_value ON run_tags (key, value, run_id);
CREATE TABLE run_properties (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_properties_by_value ON run_properties (key, value, run_id);
CREATE TABLE metric_series (
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    count INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    last_json TEXT,
    min_value {real},
    max_value {real},
    last_step INTEGER,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE metric_chunks (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    steps {blob} NOT NULL,
    points {blob} NOT NULL,
    times {blob} NOT NULL,
    PRIMARY KEY (run_id, name, seq),
    FOREIGN KEY (run_id, name) REFERENCES metric_series (run_id, name)
);
CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs (id),
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    digest TEXT NOT NULL,
    created_at {real} NOT NULL,
    streaming INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, path)
);
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    files INTEGER NOT NULL,
    created_at {real} NOT NULL
)
"""

# the finished statuses, spelled as the liveness queries spell them (so the index applies)
LIVE_RUNS_TERMINAL_SQL = "('Completed', 'Failed', 'Canceled')"

_ADD_ONLY_MESSAGE = "properties are add-only: an existing property cannot be changed or removed"

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER run_properties_no_update BEFORE UPDATE ON run_properties
    BEGIN SELECT RAISE(ABORT, '{_ADD_ONLY_MESSAGE}'); END""",
    f"""CREATE TRIGGER run_properties_no_delete BEFORE DELETE ON run_properties
    BEGIN SELECT RAISE(ABORT, '{_ADD_ONLY_MESSAGE}'); END""",
]

_POSTGRES_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION runyard_properties_add_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '{_ADD_ONLY_MESSAGE}'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER run_properties_no_change BEFORE UPDATE OR DELETE ON run_properties
    FOR EACH ROW EXECUTE FUNCTION runyard_properties_add_only()""",
]


def _initial(cur: SqlCursor) -> None:
    real = "DOUBLE PRECISION" if cur.dialect == "postgresql" else "REAL"
    blob = "BYTEA" if cur.dialect == "postgresql" else "BLOB"
    for statement in _TABLES.format(real=real, blob=blob).split(";"):
        cur.execute(statement)
    triggers = _POSTGRES_TRIGGERS if cur.dialect == "postgresql" else _SQLITE_TRIGGERS
    for statement in triggers:
        cur.execute(statement)


def _heartbeat_index(cur: SqlCursor) -> None:
    cur.execute(
        "CREATE INDEX runs_by_heartbeat ON runs (heartbeat_at) WHERE heartbeat_at IS NOT NULL"
    )


def _sqlite_properties_refuse_replace(cur: SqlCursor) -> None:
    """SQLite's REPLACE deletes the old row without firing delete triggers; refuse it here."""
    if cur.dialect == "sqlite":
        cur.execute(
            "CREATE TRIGGER run_properties_no_replace BEFORE INSERT ON run_properties "
            "WHEN EXISTS (SELECT 1 FROM run_properties WHERE run_id = NEW.run_id "
            "AND key = NEW.key AND value IS NOT NEW.value) "
            f"BEGIN SELECT RAISE(ABORT, '{_ADD_ONLY_MESSAGE}'); END"
        )


def _supervisor_identity(cur: SqlCursor) -> None:
    """Which process supervises a run (liveness by process); an index of unfinished runs."""
    cur.execute("ALTER TABLE runs ADD COLUMN supervisor TEXT")
    cur.execute("DROP INDEX runs_by_heartbeat")
    cur.execute(
        "CREATE INDEX runs_live_by_heartbeat ON runs (heartbeat_at) WHERE heartbeat_at IS "
        f"NOT NULL AND status NOT IN {LIVE_RUNS_TERMINAL_SQL}"
    )


def _postgres_64_bit_steps(cur: SqlCursor) -> None:
    """Steps are int64 everywhere; PostgreSQL's INTEGER is 32 bits (SQLite's is 64)."""
    if cur.dialect == "postgresql":
        cur.execute(
            "ALTER TABLE metric_series ALTER COLUMN last_step TYPE BIGINT, "
            "ALTER COLUMN count TYPE BIGINT"
        )
        cur.execute("ALTER TABLE metric_chunks ALTER COLUMN count TYPE BIGINT")


def _server_tables(cur: SqlCursor) -> None:
    """The tracking server's tables: its access tokens (stored hashed) and the idempotency
    keys of metric batches it stored, so that a batch sent again is not stored twice."""
    real = "DOUBLE PRECISION" if cur.dialect == "postgresql" else "REAL"
    cur.execute(
        f"""CREATE TABLE tokens (
            name TEXT PRIMARY KEY,
            digest TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            scope_run_id TEXT,
            created_by TEXT,
            created_at {real} NOT NULL,
            expires_at {real},
            revoked_at {real},
            last_used_at {real}
        )"""
    )
    cur.execute(
        f"""CREATE TABLE batch_keys (
            key TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            stored_at {real} NOT NULL
        )"""
    )
    cur.execute("CREATE INDEX batch_keys_by_time ON batch_keys (stored_at)")


def _soft_delete_and_numbers(cur: SqlCursor) -> None:
    """A run may be soft-deleted (MLflow's lifecycle stage); a series' last value is also
    kept as a number when it is one, so that searches compare and sort by it in SQL, and
    the time of its last point is kept beside it. On PostgreSQL, tags and properties are
    indexed by their value's MD5, so that values of any length fit the index."""
    real = "DOUBLE PRECISION" if cur.dialect == "postgresql" else "REAL"
    cur.execute(f"ALTER TABLE runs ADD COLUMN deleted_at {real}")
    cur.execute(f"ALTER TABLE metric_series ADD COLUMN last_number {real}")
    cur.execute(f"ALTER TABLE metric_series ADD COLUMN last_time {real}")
    if cur.dialect == "postgresql":  # a B-tree entry holds ~2,700 bytes: index values' MD5
        for table, index in (
            ("run_tags", "run_tags_by_value"),
            ("run_properties", "run_properties_by_value"),
        ):
            cur.execute(f"DROP INDEX {index}")
            cur.execute(f"CREATE INDEX {index} ON {table} (key, md5(value), run_id)")
    number = r"'^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'"
    if cur.dialect == "postgresql":
        cur.execute(
            "UPDATE metric_series SET last_number = CAST(last_json AS DOUBLE PRECISION) "
            f"WHERE last_json ~ {number} OR last_json IN ('Infinity', '-Infinity')"
        )
    else:
        cur.execute(
            "UPDATE metric_series SET last_number = CAST(last_json AS REAL) "
            "WHERE json_valid(last_json) AND json_type(last_json) IN ('integer', 'real')"
        )


def _status_changes(cur: SqlCursor) -> None:
    """Every status a run takes, in order, with its time, kept by triggers on ``runs``:
    whichever path changes a status (a script, a supervisor, the liveness rule, a server)
    is noted. A status that starts or ends a run takes the run's start or end time; any
    other the database's clock. Existing runs get their current status only."""
    real = "DOUBLE PRECISION" if cur.dialect == "postgresql" else "REAL"
    serial = "BIGSERIAL PRIMARY KEY" if cur.dialect == "postgresql" else "INTEGER PRIMARY KEY"
    cur.execute(
        f"""CREATE TABLE run_status_changes (
            seq {serial},
            run_id TEXT NOT NULL REFERENCES runs (id),
            status TEXT NOT NULL,
            at {real} NOT NULL
        )"""
    )
    cur.execute("CREATE INDEX run_status_changes_by_run ON run_status_changes (run_id, seq)")
    cur.execute(
        "INSERT INTO run_status_changes (run_id, status, at) "
        "SELECT id, status, COALESCE(ended_at, started_at, created_at) FROM runs "
        "ORDER BY created_at"
    )
    now = clock_sql(cur.dialect)
    greatest = "GREATEST" if cur.dialect == "postgresql" else "MAX"
    note = "INSERT INTO run_status_changes (run_id, status, at) VALUES (NEW.id, NEW.status,"
    when = (
        "CASE WHEN NEW.ended_at IS NOT NULL AND OLD.ended_at IS NULL THEN NEW.ended_at "
        "WHEN NEW.started_at IS NOT NULL AND OLD.started_at IS NULL THEN NEW.started_at "
        f"ELSE {now} END"
    )
    # never before the run's last change: the times come from two clocks (the writer's and
    # the database's, which SQLite rounds to the millisecond), and a writer that waited
    # for a lock stamps the time it took before the wait
    last = "(SELECT MAX(p.at) FROM run_status_changes p WHERE p.run_id = NEW.id)"
    when = f"{greatest}({when}, COALESCE({last}, {when}))"
    if cur.dialect == "postgresql":
        cur.execute(
            f"""CREATE OR REPLACE FUNCTION runyard_status_change() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    {note} NEW.created_at);
                ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
                    {note} {when});
                END IF;
                RETURN NULL;
            END; $$ LANGUAGE plpgsql"""
        )
        cur.execute(
            "CREATE TRIGGER runs_status_changes AFTER INSERT OR UPDATE OF status ON runs "
            "FOR EACH ROW EXECUTE FUNCTION runyard_status_change()"
        )
        return
    cur.execute(
        f"""CREATE TRIGGER runs_status_created AFTER INSERT ON runs BEGIN
        {note} NEW.created_at); END"""
    )
    cur.execute(
        f"""CREATE TRIGGER runs_status_changed AFTER UPDATE OF status ON runs
        WHEN NEW.status IS NOT OLD.status BEGIN
        {note} {when}); END"""
    )


def _compute_targets(cur: SqlCursor) -> None:
    """Compute targets attached to the workspace: where script runs can be sent."""
    real = "DOUBLE PRECISION" if cur.dialect == "postgresql" else "REAL"
    cur.execute(
        f"""CREATE TABLE compute_targets (
            name TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            address TEXT NOT NULL,
            created_at {real} NOT NULL,
            created_by TEXT
        )"""
    )


MIGRATIONS = [
    (1, _initial),
    (2, _heartbeat_index),
    (3, _sqlite_properties_refuse_replace),
    (4, _supervisor_identity),
    (5, _postgres_64_bit_steps),
    (6, _server_tables),
    (7, _soft_delete_and_numbers),
    (8, _status_changes),
    (9, _compute_targets),
]
LATEST = MIGRATIONS[-1][0]


def current_version(db: Database) -> int:
    """The schema version of ``db`` (0 for a database runyard has not set up), read only."""
    exists = (
        "SELECT to_regclass('runyard_schema') IS NOT NULL"
        if db.dialect == "postgresql"
        else "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'runyard_schema')"
    )
    if not db.read(exists)[0][0]:
        return 0
    return int(db.read("SELECT MAX(version) FROM runyard_schema")[0][0] or 0)


def migrate(db: Database) -> int:
    """Bring the database to the latest schema; safe when many processes open it at once.

    A database already at the latest version is only read, never written.
    """
    if current_version(db) == LATEST:
        return LATEST

    def body(cur: SqlCursor) -> int:
        if cur.dialect == "postgresql":
            cur.execute("SELECT pg_advisory_xact_lock(7460318)")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS runyard_schema "
            "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = cur.execute("SELECT MAX(version) FROM runyard_schema")[0][0] or 0
        if current > LATEST:
            raise StoreError(
                f"this workspace has schema version {current}, newer than this runyard "
                f"understands ({LATEST}); upgrade runyard: pip install -U runyard"
            )
        for version, step in MIGRATIONS:
            if version > current:
                step(cur)
                cur.execute(
                    "INSERT INTO runyard_schema (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
        return int(max(current, LATEST))

    version: int = db.write(body)
    return version
