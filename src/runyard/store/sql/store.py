"""SqlStore: the Store protocol on SQLite or PostgreSQL."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..._validation import (
    check_artifact_path,
    check_experiment_name,
    check_key_and_value,
    check_name,
    check_run_id,
    check_status,
    check_text,
)
from ...errors import Conflict, NotFound, UserError
from ...records import (
    TERMINAL_STATUSES,
    ArtifactRecord,
    ExperimentOverview,
    ExperimentRecord,
    MetricHistory,
    NewRun,
    RunEvent,
    RunQuery,
    RunRecord,
    SeriesAppend,
    SeriesSummary,
    StatusChange,
    SupervisedRun,
)
from . import metrics, overview, run_search
from .computes import ComputesMixin
from .database import Database, SqlCursor, _without_password, clock_sql
from .locks import LocksMixin
from .schema import LIVE_RUNS_TERMINAL_SQL, migrate
from .tokens import TokensMixin

_RUN_COLUMNS = (
    "r.id, r.experiment_id, e.name, r.parent_id, r.root_id, r.number, r.name, r.display_name, "
    "r.description, r.type, r.target, r.status, r.created_at, r.started_at, r.ended_at, "
    "r.heartbeat_at, r.error, r.run_definition, r.snapshot_id, r.submitted_by, r.deleted_at"
)
_RUN_FROM = "runs r JOIN experiments e ON e.id = r.experiment_id"
_LIVE = f"heartbeat_at IS NOT NULL AND status NOT IN {LIVE_RUNS_TERMINAL_SQL}"
_FREE_TEXT = ("display_name", "description")
# rows of one INSERT: PostgreSQL takes at most 65,535 parameters a statement (17 a run)
_ROWS_PER_INSERT = 1000
_UPDATABLE = {"display_name", "description", "snapshot_id", "run_definition", "type", "error"}


BATCH_KEY_DAYS = 30  # how long a metric batch's idempotency key is remembered


def _check_pairs(pairs: dict[str, Any], what: str) -> None:
    """Tags and properties: text both databases store alike (no NUL, no lone surrogate),
    and small enough for their index (PostgreSQL would fail the write, SQLite take it)."""
    for key, value in pairs.items():
        check_name(key, f"{what} key")
        if value is not None:
            check_text(value, f"{what} {key!r}")
        check_key_and_value(key, value, what)


def _check_texts(what: str, **texts: Any) -> None:
    for name, value in texts.items():
        if isinstance(value, str):
            check_text(value, f"{what} {name}")


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _run_row(r: RunRecord) -> tuple[Any, ...]:
    """The INSERT parameters of a new run, in the column order of ``create_runs``."""
    definition = None if r.run_definition is None else json.dumps(r.run_definition)
    return (
        r.id, r.experiment_id, r.parent_id, r.root_id, r.number, r.name, r.display_name,
        r.description, r.type, r.target, r.status, r.created, r.start, r.heartbeat,
        definition, r.submitted_by, r.snapshot_id,
    )  # fmt: skip


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SqlStore(TokensMixin, ComputesMixin, LocksMixin):
    """Run history in one SQL database (SQLite file or PostgreSQL).

    >>> from runyard.store import open_store
    >>> store = open_store("/tmp/ws")          # doctest: +SKIP
    >>> store.get_or_create_experiment("demo")  # doctest: +SKIP
    """

    def __init__(self, db: Database, uri: str) -> None:
        self.db = db
        self.uri = uri
        self._label = _without_password(uri)
        migrate(db)

    @property
    def label(self) -> str:
        """How messages name the workspace. A server sets its public URL here, and the
        database's own errors then name that too, never the path or URI behind it."""
        return self._label

    @label.setter
    def label(self, value: str) -> None:
        self._label = value
        self.db.where = value

    def close(self) -> None:
        self.db.close()

    # -- experiments -----------------------------------------------------
    def _experiment_rows(self, where: str, params: Sequence[Any]) -> list[ExperimentRecord]:
        rows = self.db.read(
            f"SELECT id, name, created_at, archived_at FROM experiments WHERE {where} "
            "ORDER BY created_at, name",
            params,
        )
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tags: dict[str, dict[str, str | None]] = {i: {} for i in ids}
        for eid, key, value in self.db.read(
            f"SELECT experiment_id, key, value FROM experiment_tags "
            f"WHERE experiment_id IN ({_marks(len(ids))}) ORDER BY key",
            ids,
        ):
            tags[eid][key] = value
        return [ExperimentRecord(r[0], r[1], r[2], r[3], tags[r[0]]) for r in rows]

    def get_or_create_experiment(self, name: str) -> ExperimentRecord:
        found = self.find_experiment(name)
        if found is not None:
            return found
        check_experiment_name(name)  # a new name: one the SDK would take

        def body(cur: SqlCursor) -> None:
            cur.execute(
                "INSERT INTO experiments (id, name, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) WHERE archived_at IS NULL DO NOTHING",
                (uuid.uuid4().hex, name, time.time()),
            )

        self.db.write(body)
        created = self.find_experiment(name)
        assert created is not None
        return created

    def find_experiment(self, name: str) -> ExperimentRecord | None:
        rows = self._experiment_rows("name = ? AND archived_at IS NULL", (name,))
        return rows[0] if rows else None

    def get_experiment(self, experiment_id: str) -> ExperimentRecord:
        rows = self._experiment_rows("id = ?", (experiment_id,))
        if not rows:
            raise NotFound(f"no experiment with id {experiment_id!r} in {self.label}")
        return rows[0]

    def list_experiments(self, view_type: str = "ActiveOnly") -> list[ExperimentRecord]:
        where = {
            "ActiveOnly": "archived_at IS NULL",
            "ArchivedOnly": "archived_at IS NOT NULL",
            "All": "1 = 1",
        }.get(view_type)
        if where is None:
            raise UserError(
                f"view_type {view_type!r} is not one of 'ActiveOnly', 'ArchivedOnly', 'All'"
            )
        return self._experiment_rows(where, ())

    def archive_experiment(self, experiment_id: str) -> ExperimentRecord:
        self.get_experiment(experiment_id)
        self.db.write(
            lambda cur: cur.execute(
                "UPDATE experiments SET archived_at = ? WHERE id = ? AND archived_at IS NULL",
                (time.time(), experiment_id),
            )
        )
        return self.get_experiment(experiment_id)

    def reactivate_experiment(self, experiment_id: str) -> ExperimentRecord:
        record = self.get_experiment(experiment_id)

        def body(cur: SqlCursor) -> None:
            active = cur.execute(
                "SELECT id FROM experiments WHERE name = ? AND archived_at IS NULL AND id <> ?",
                (record.name, experiment_id),
            )
            if active:
                raise Conflict(
                    f"cannot reactivate experiment {record.name!r}: an active experiment "
                    "already has that name; archive that one first"
                )
            cur.execute("UPDATE experiments SET archived_at = NULL WHERE id = ?", (experiment_id,))

        self.db.write(body)
        return self.get_experiment(experiment_id)

    def set_experiment_tags(self, experiment_id: str, tags: dict[str, str | None]) -> None:
        _check_pairs(tags, "tag")
        self.get_experiment(experiment_id)
        self.db.write(
            lambda cur: cur.executemany(
                "INSERT INTO experiment_tags (experiment_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                [(experiment_id, k, v) for k, v in tags.items()],
            )
        )

    def remove_experiment_tags(self, experiment_id: str, keys: Sequence[str]) -> None:
        self.db.write(
            lambda cur: cur.executemany(
                "DELETE FROM experiment_tags WHERE experiment_id = ? AND key = ?",
                [(experiment_id, k) for k in keys],
            )
        )

    # -- runs ------------------------------------------------------------
    def create_runs(self, experiment_id: str, runs: Sequence[NewRun]) -> list[RunRecord]:
        for new in runs:  # ids become folder names: never '..', '/', NUL...
            check_run_id(new.id)
            check_status(new.status)
            _check_texts(
                "run", name=new.name, display_name=new.display_name, description=new.description
            )
            _check_pairs(new.tags, "tag")
            _check_pairs(new.properties, "property")
        ids = [r.id for r in runs]
        if len(set(ids)) != len(ids):
            raise Conflict("run ids given to create_runs are not unique")
        if not runs:
            return []
        now = time.time()

        def body(cur: SqlCursor) -> list[RunRecord]:
            counted = cur.execute(
                "UPDATE experiments SET run_counter = run_counter + ? WHERE id = ? "
                "RETURNING run_counter, name",
                (len(runs), experiment_id),
            )
            if not counted:
                raise NotFound(f"no experiment with id {experiment_id!r} in {self.label}")
            last, experiment_name = counted[0]
            parents = {r.parent_id for r in runs if r.parent_id}
            roots: dict[str, str] = {}
            for parent_id in parents:
                found = cur.execute(
                    "SELECT root_id, experiment_id FROM runs WHERE id = ?", (parent_id,)
                )
                if not found:
                    raise NotFound(f"parent run {parent_id!r} does not exist")
                if found[0][1] != experiment_id:
                    raise UserError(
                        f"parent run {parent_id!r} belongs to another experiment; a child "
                        "run lives in its parent's experiment"
                    )
                roots[parent_id] = found[0][0]
            records = []
            for offset, new in enumerate(runs):
                number = last - len(runs) + 1 + offset
                root = roots[new.parent_id] if new.parent_id else new.id
                started = now if new.status == "Running" else None
                record = RunRecord(
                    new.id, experiment_id, experiment_name, new.parent_id, root, number,
                    new.name, new.display_name, new.description, new.type, new.target,
                    new.status, now, started, None, now if new.heartbeat else None, None,
                    new.run_definition,
                    new.snapshot_id, new.submitted_by, dict(new.tags), dict(new.properties),
                )  # fmt: skip
                records.append(record)
            row = f"({_marks(17)})"
            inserted = []
            for start in range(0, len(records), _ROWS_PER_INSERT):
                part = records[start : start + _ROWS_PER_INSERT]
                inserted += cur.execute(
                    "INSERT INTO runs (id, experiment_id, parent_id, root_id, number, name, "
                    "display_name, description, type, target, status, created_at, started_at, "
                    "heartbeat_at, run_definition, submitted_by, snapshot_id) VALUES "
                    + ", ".join([row] * len(part))
                    + " ON CONFLICT (id) DO NOTHING RETURNING id",
                    [value for r in part for value in _run_row(r)],
                )
            if len(inserted) < len(records):
                taken = sorted(set(ids) - {r[0] for r in inserted})
                raise Conflict(f"a run with id {taken[0]!r} already exists; choose another id")
            beating = [r.id for r in runs if r.heartbeat]
            if beating:  # the first heartbeat, by the database's clock like every later one
                cur.execute(
                    f"UPDATE runs SET heartbeat_at = {self._db_now()} "
                    f"WHERE id IN ({_marks(len(beating))})",
                    beating,
                )
            cur.executemany(
                "INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?)",
                [(r.id, k, v) for r in runs for k, v in r.tags.items()],
            )
            cur.executemany(
                "INSERT INTO run_properties (run_id, key, value) VALUES (?, ?, ?)",
                [(r.id, k, v) for r in runs for k, v in r.properties.items()],
            )
            return records

        created: list[RunRecord] = self.db.write(body)
        return created

    def _hydrate(self, rows: list[Any]) -> list[RunRecord]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        tags: dict[str, dict[str, str | None]] = {i: {} for i in ids}
        props: dict[str, dict[str, str]] = {i: {} for i in ids}
        marks = _marks(len(ids))
        for rid, key, value in self.db.read(
            f"SELECT run_id, key, value FROM run_tags WHERE run_id IN ({marks})", ids
        ):
            tags[rid][key] = value
        for rid, key, value in self.db.read(
            f"SELECT run_id, key, value FROM run_properties WHERE run_id IN ({marks})", ids
        ):
            props[rid][key] = value
        return [
            RunRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
                r[13],
                r[14],
                r[15],
                _loads(r[16]),
                _loads(r[17]),
                r[18],
                r[19],
                tags[r[0]],
                props[r[0]],
                r[20],
            )
            for r in rows
        ]

    def get_run(self, run_id: str) -> RunRecord:
        rows = self.db.read(f"SELECT {_RUN_COLUMNS} FROM {_RUN_FROM} WHERE r.id = ?", (run_id,))
        if not rows:
            raise NotFound(
                f"no run with id {run_id!r} in {self.label}; check the id "
                "(experiment.get_runs() lists the runs)"
            )
        return self._hydrate(rows)[0]

    def search_runs(
        self,
        query: RunQuery,
        *,
        after: tuple[float, int] | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> list[RunRecord]:
        found = run_search.search_sql(
            self.db, query, _RUN_COLUMNS, _RUN_FROM, after=after, limit=limit, offset=offset
        )
        return [] if found is None else self._hydrate(self.db.read(*found))

    def count_runs(self, query: RunQuery) -> int:
        return overview.count_runs(self.db, query, _RUN_FROM)

    def experiment_overview(self, view_type: str = "ActiveOnly") -> list[ExperimentOverview]:
        return overview.experiment_overview(self.db, self.list_experiments(view_type))

    def status_history(self, run_id: str) -> list[StatusChange]:
        check_run_id(run_id)
        found = overview.status_history(self.db, run_id)
        if not found:
            self.get_run(run_id)  # NotFound for a run that does not exist
        return found

    def set_deleted(self, run_id: str, deleted: bool) -> RunRecord:
        """Soft-delete a run (MLflow's ``delete_run``), or restore it: a deleted run keeps
        everything it holds, and searches leave it out unless asked for deleted runs."""
        check_run_id(run_id)
        stamp = f"COALESCE(deleted_at, {self._db_now()})" if deleted else "NULL"

        def body(cur: SqlCursor) -> None:
            self._require_run(cur, run_id)
            cur.execute(f"UPDATE runs SET deleted_at = {stamp} WHERE id = ?", (run_id,))

        self.db.write(body)
        return self.get_run(run_id)

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        unknown = set(fields) - _UPDATABLE
        _check_texts("run", **{k: v for k, v in fields.items() if k in _FREE_TEXT})
        if unknown:
            raise UserError(f"cannot update run field(s) {sorted(unknown)}")
        for key in ("run_definition", "error"):
            if fields.get(key) is not None:
                fields[key] = json.dumps(fields[key])

        def body(cur: SqlCursor) -> None:
            self._require_run(cur, run_id)
            sets = ", ".join(f"{k} = ?" for k in fields)
            cur.execute(f"UPDATE runs SET {sets} WHERE id = ?", (*fields.values(), run_id))

        if fields:
            self.db.write(body)
        return self.get_run(run_id)

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        only_from: Sequence[str] | None = None,
    ) -> RunRecord:
        """Move a run to ``status`` unless it is finished (or not in ``only_from``)."""
        for one in (status, *(only_from or ())):
            check_status(one)
        terminal = status in TERMINAL_STATUSES
        guard = ""
        params: list[Any] = []
        if only_from is not None:
            guard = f" AND status IN ({_marks(len(only_from))})"
            params = list(only_from)

        # a start or end is stamped once the row is ours: not before a change made by a
        # writer this one waited for (the later of this clock and the database's)
        later = "GREATEST" if self.db.dialect == "postgresql" else "MAX"
        stamp = f"{later}(?, {self._db_now()})"

        def body(cur: SqlCursor) -> None:
            self._require_run(cur, run_id)
            now = time.time()
            cur.execute(
                "UPDATE runs SET status = ?, "
                f"started_at = CASE WHEN ? THEN COALESCE(started_at, {stamp}) "
                "ELSE started_at END, "
                f"ended_at = CASE WHEN ? THEN {stamp} ELSE ended_at END, "
                "error = COALESCE(?, error) "
                f"WHERE id = ? AND status NOT IN {LIVE_RUNS_TERMINAL_SQL}{guard}",
                (
                    status,
                    status == "Running",
                    now,
                    terminal,
                    now,
                    None if error is None else json.dumps(error),
                    run_id,
                    *params,
                ),
            )

        self.db.write(body)
        return self.get_run(run_id)

    # -- liveness: heartbeats stamped and aged by the database's clock ----------------
    def _db_now(self) -> str:
        """SQL for the database's clock in Unix seconds (one clock for every machine)."""
        return clock_sql(self.db.dialect)

    def heartbeat(
        self, run_id: str, status: str | None = None, *, supervisor: str | None = None
    ) -> None:
        """Record that the run's supervisor is alive; a NotResponding run gets ``status`` back.

        ``supervisor`` records which process supervises the run (see ``_owners``).
        """
        check_status(status)
        sets = [f"heartbeat_at = {self._db_now()}"]
        params: list[Any] = []
        if status is not None:
            sets.append("status = CASE WHEN status = 'NotResponding' THEN ? ELSE status END")
            params.append(status)
        if supervisor is not None:
            sets.append("supervisor = ?")
            params.append(supervisor)
        sql = f"UPDATE runs SET {', '.join(sets)} WHERE id = ?"
        self.db.write(lambda cur: cur.execute(sql, (*params, run_id)))

    def supervised_runs(
        self, late_after: float, *, include: str | None = None
    ) -> list[SupervisedRun]:
        """Unfinished supervised runs silent for ``late_after`` s or more, and ``include``."""
        now = self._db_now()
        columns = f"id, status, supervisor, {now} - heartbeat_at"
        sql = f"SELECT {columns} FROM runs WHERE {_LIVE} AND heartbeat_at < {now} - ?"
        params: list[Any] = [late_after]
        if include is not None:
            sql += f" UNION ALL SELECT {columns} FROM runs WHERE {_LIVE} AND id = ?"
            params.append(include)
        found = {row[0]: row for row in self.db.read(sql, params)}
        return [SupervisedRun(r[0], r[1], r[2], float(r[3])) for r in found.values()]

    def expire_silent_runs(
        self, not_responding_after: float, fail_after: float, *, spare: Sequence[str] = ()
    ) -> int:
        """Mark runs whose heartbeat stopped: NotResponding, then Failed. Returns how many.

        Ages are measured with the database's clock; runs in ``spare`` are left alone (a
        reader on their supervisor's machine saw the supervisor alive).
        """
        now = self._db_now()
        skip = f" AND id NOT IN ({_marks(len(spare))})" if spare else ""
        late = f"{_LIVE} AND heartbeat_at < {now} - ?{skip}"
        quiet = f"SELECT 1 FROM runs WHERE {late} AND status <> 'NotResponding' LIMIT 1"
        dead = f"SELECT 1 FROM runs WHERE {late} LIMIT 1"
        if not self.db.read(quiet, (not_responding_after, *spare)) and not self.db.read(
            dead, (fail_after, *spare)
        ):
            return 0
        error = json.dumps(
            {
                "error": {
                    "code": "NotResponding",
                    "message": f"the run's supervisor sent no heartbeat for {fail_after:g} s "
                    "(by the database's clock: the process was killed or its machine stopped "
                    "or slept); the run is marked Failed",
                }
            }
        )

        def body(cur: SqlCursor) -> int:
            # ended by the clock that aged the heartbeat: never before the last one
            failed = cur.execute(
                f"UPDATE runs SET status = 'Failed', ended_at = {now}, "
                f"error = COALESCE(error, ?) WHERE {late} RETURNING id",
                (error, fail_after, *spare),
            )
            silent = cur.execute(
                f"UPDATE runs SET status = 'NotResponding' WHERE {late} "
                "AND status <> 'NotResponding' RETURNING id",
                (not_responding_after, *spare),
            )
            return len(failed) + len(silent)

        changed: int = self.db.write(body)
        return changed

    def set_tags(self, run_id: str, tags: dict[str, str | None]) -> None:
        _check_pairs(tags, "tag")

        def body(cur: SqlCursor) -> None:
            self._require_run(cur, run_id)
            cur.executemany(
                "INSERT INTO run_tags (run_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
                [(run_id, k, v) for k, v in tags.items()],
            )

        self.db.write(body)

    def remove_tags(self, run_id: str, keys: Sequence[str]) -> None:
        def body(cur: SqlCursor) -> None:
            self._require_run(cur, run_id)
            cur.executemany(
                "DELETE FROM run_tags WHERE run_id = ? AND key = ?", [(run_id, k) for k in keys]
            )

        self.db.write(body)

    def add_properties(self, run_id: str, properties: dict[str, str]) -> None:
        _check_pairs(properties, "property")
        keys = list(properties)

        def check(cur: SqlCursor) -> None:
            for key, stored in cur.execute(
                f"SELECT key, value FROM run_properties WHERE run_id = ? "
                f"AND key IN ({_marks(len(keys))})",
                (run_id, *keys),
            ):
                if stored != properties[key]:
                    raise Conflict(
                        f"property {key!r} of run {run_id} is already {stored!r}; it cannot "
                        f"become {properties[key]!r}: properties are add-only (use a tag for "
                        "values that change)"
                    )

        def body(cur: SqlCursor) -> None:
            self._require_run(cur, run_id)
            check(cur)
            cur.executemany(
                "INSERT INTO run_properties (run_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO NOTHING",
                [(run_id, k, v) for k, v in properties.items()],
            )
            check(cur)  # a concurrent writer may have won the race on PostgreSQL

        if keys:
            self.db.write(body)

    def _require_run(self, cur: SqlCursor, run_id: str) -> None:
        if not cur.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)):
            raise NotFound(f"no run with id {run_id!r} in {self.label}")

    # -- metrics ---------------------------------------------------------
    def run_events(
        self, run_id: str, artifacts: Any, log_path: str | None = None, offset: int = 0
    ) -> Iterator[RunEvent]:
        """Follow the run by looking again and again: every 0.1 s while its log is read,
        otherwise less and less often (up to every 2 s)."""
        from ..._events import follow

        delay = 0.1 if log_path is not None else 0.2
        for event in follow(self, artifacts, run_id, log_path, offset):
            if event.kind == "idle":
                time.sleep(delay)
                if log_path is None:
                    delay = min(delay * 1.5, 2.0)
            yield event

    def run_credentials(self, run_id: str) -> dict[str, str]:
        return {}  # a database is reached with the workspace URI alone

    def log_batch(
        self, run_id: str, series: Sequence[SeriesAppend], key: str | None = None
    ) -> bool:
        """Append ``series`` to ``run_id`` in one transaction. A batch with an idempotency
        ``key`` that was stored before is not stored again; returns whether it was stored."""

        def body(cur: SqlCursor) -> bool:
            self._require_run(cur, run_id)
            if key is not None:
                check_text(key, "batch key", 200)
                now = time.time()
                # two requests with one key at once: the second waits for the first's
                # commit, then finds the key taken
                if not cur.execute(
                    "INSERT INTO batch_keys (key, run_id, stored_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO NOTHING RETURNING key",
                    (key, run_id, now),
                ):
                    return False
                if random.random() < 0.001:  # now and then, forget keys of long ago
                    cur.execute(
                        "DELETE FROM batch_keys WHERE stored_at < ?",
                        (now - BATCH_KEY_DAYS * 86400,),
                    )
            for one in series:
                metrics.append_series(cur, run_id, one)
            return True

        if not series:
            return False
        stored: bool = self.db.write(body)
        return stored

    def list_series(self, run_ids: Sequence[str]) -> list[SeriesSummary]:
        return metrics.list_series(self.db, run_ids)

    list_series_now = list_series  # a database is never "away": the same call

    def persist(self) -> None:
        """Nothing waits: every write is durable when it returns."""

    def get_history(self, run_id: str, name: str, *, times: bool = True) -> MetricHistory:
        found = metrics.get_histories(self.db, [run_id], name, times=times).get(run_id)
        if not found:
            raise NotFound(f"run {run_id} has no metric named {name!r}")
        return found[0]

    def get_histories(
        self, run_ids: Sequence[str], name: str | None = None, values_only: bool = False
    ) -> dict[str, list[MetricHistory]]:
        return metrics.get_histories(self.db, run_ids, name, values_only)

    # -- artifacts and snapshots ------------------------------------------
    def add_artifact(self, record: ArtifactRecord, place: Callable[[], None] | None = None) -> None:
        """Record an artifact; ``place()`` puts its bytes in place before the record commits.

        A name is write-once (a streaming log may be recorded again), and never both a file
        and a folder: ``a`` and ``a/b`` cannot both exist. If ``place`` fails, nothing is
        recorded. Writes of one run's artifacts take turns, so ``place`` sees every other
        name of the run committed: whatever else is in its way is unrecorded leftovers.
        """
        check_artifact_path(record.path)  # a key of the table: bounded like every key
        parts = record.path.split("/")
        above = ["/".join(parts[:i]) for i in range(1, len(parts))]
        below = record.path + "/"

        def body(cur: SqlCursor) -> None:
            if cur.dialect == "postgresql":  # SQLite's writers take turns already
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(?, 7460318))", (record.run_id,)
                )
            self._require_run(cur, record.run_id)
            clash = cur.execute(
                "SELECT path FROM artifacts WHERE run_id = ? AND (substr(path, 1, ?) = ?"
                + (f" OR path IN ({_marks(len(above))})" if above else "")
                + ") LIMIT 1",
                (record.run_id, len(below), below, *above),
            )
            if clash:
                raise Conflict(
                    f"artifact {record.path!r} cannot be stored in run {record.run_id}: "
                    f"{clash[0][0]!r} is there already, and a name cannot be both a file and "
                    "a folder; upload under another name"
                )
            upsert = "DO UPDATE SET size = excluded.size, digest = excluded.digest WHERE "
            stored = cur.execute(
                "INSERT INTO artifacts (run_id, path, size, digest, created_at, streaming) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, path) "
                + (f"{upsert}artifacts.streaming = 1" if record.streaming else "DO NOTHING")
                + " RETURNING path",
                (
                    record.run_id,
                    record.path,
                    record.size,
                    record.digest,
                    record.created,
                    int(record.streaming),
                ),
            )
            if not stored:
                raise Conflict(
                    f"artifact {record.path!r} already exists in run {record.run_id}; "
                    "artifacts are write-once: upload under another name"
                )
            if place is not None:
                place()

        self.db.write(body)

    def _artifact_rows(self, where: str, params: Sequence[Any]) -> list[ArtifactRecord]:
        rows = self.db.read(
            "SELECT run_id, path, size, digest, created_at, streaming FROM artifacts "
            f"WHERE {where} ORDER BY path",
            params,
        )
        return [ArtifactRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactRecord]:
        if not prefix:
            return self._artifact_rows("run_id = ?", (run_id,))
        folder = prefix.rstrip("/") + "/"
        return self._artifact_rows(
            "run_id = ? AND (path = ? OR substr(path, 1, ?) = ?)",
            (run_id, prefix, len(folder), folder),
        )

    def get_artifact(self, run_id: str, path: str) -> ArtifactRecord:
        rows = self._artifact_rows("run_id = ? AND path = ?", (run_id, path))
        if not rows:
            raise NotFound(
                f"run {run_id} has no file {path!r}; run.get_file_names() lists its files"
            )
        return rows[0]

    def add_snapshot(self, snapshot_id: str, size: int, files: int) -> None:
        self.db.write(
            lambda cur: cur.execute(
                "INSERT INTO snapshots (id, size, files, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (snapshot_id, size, files, time.time()),
            )
        )

    def has_snapshot(self, snapshot_id: str) -> bool:
        return bool(self.db.read("SELECT 1 FROM snapshots WHERE id = ?", (snapshot_id,)))
