"""The SQL of a run search: tag and property filters, conditions, order and paging.

A search selects from ``runs r``. Tag and property equality filters (the SDK's) are first
answered through the (key, value, run_id) indexes: the matching runs are named and then
fetched by primary key, so the plan never depends on table statistics. Conditions (on a
metric's last value, a tag, a property or an attribute, as MLflow's search grammar asks)
and orders become ``EXISTS`` and scalar subqueries on the run's own rows; a metric is read
from its series summary, never from its points.
"""

from __future__ import annotations

from typing import Any

from ...errors import UserError
from ...records import (
    CONDITION_FIELDS,
    CONDITION_OPS,
    NUMERIC_ATTRIBUTES,
    RUN_ATTRIBUTES,
    Condition,
    Order,
    RunQuery,
)
from .database import Database, clock_sql

MAX_NAMED_MATCHES = 50_000
MAX_CONDITIONS = 25
_COMPOUND_TERMS = 250
_COLUMN_NAMES = (
    "id", "name", "display_name", "description", "type", "target", "status", "submitted_by",
    "number", "created_at", "started_at", "ended_at", "experiment_id", "parent_id",
)  # fmt: skip
_ATTRIBUTE_COLUMNS = {a: f"r.{c}" for a, c in zip(RUN_ATTRIBUTES, _COLUMN_NAMES, strict=True)}
# a condition or order on one of these reads the row of the run's own (key) in that table
_KEYED = {
    "metric": ("metric_series", "name", "last_number"),
    "tag": ("run_tags", "key", "value"),
    "property": ("run_properties", "key", "value"),
}
_LIFECYCLES = {"active": "r.deleted_at IS NULL", "deleted": "r.deleted_at IS NOT NULL", "all": ""}


def filter_selects(db: Database, query: RunQuery) -> list[tuple[str, tuple[str, ...]]]:
    """One ``SELECT run_id`` (and its parameters) per tag and property filter of ``query``."""
    selects: list[tuple[str, tuple[str, ...]]] = []
    for table, filters in (("run_tags", query.tags), ("run_properties", query.properties)):
        for key, value in filters.items():
            if value is None:
                selects.append((f"SELECT run_id FROM {table} WHERE key = ?", (key,)))
            else:
                test, params = db.value_equals("value", value)
                selects.append(
                    (f"SELECT run_id FROM {table} WHERE key = ? AND {test}", (key, *params))
                )
    return selects


def _intersect(selects: list[str]) -> str:
    """``INTERSECT`` of ``selects`` (of ``run_id``), nested in groups: SQLite refuses a
    compound SELECT of more than 500 terms (a filter of many tags)."""
    if len(selects) <= _COMPOUND_TERMS:
        return " INTERSECT ".join(selects)
    groups = [selects[i : i + _COMPOUND_TERMS] for i in range(0, len(selects), _COMPOUND_TERMS)]
    return _intersect([f"SELECT run_id FROM ({_intersect(g)}) g{i}" for i, g in enumerate(groups)])


def column_filters(query: RunQuery) -> tuple[list[str], list[Any]]:
    """The conditions of ``query`` on columns of ``runs r`` and their parameters."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("r.experiment_id", query.experiment_id),
        ("r.parent_id", query.parent_id),
        ("r.type", query.type),
        ("r.status", query.status),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.top_level_only:
        where.append("r.parent_id IS NULL")
    if query.lifecycle not in _LIFECYCLES:
        raise UserError(
            f"lifecycle {query.lifecycle!r} is not one of {', '.join(_LIFECYCLES)}; "
            "'active' leaves deleted runs out"
        )
    if _LIFECYCLES[query.lifecycle]:
        where.append(_LIFECYCLES[query.lifecycle])
    return where, params


def matching_ids(db: Database, query: RunQuery) -> list[str] | None:
    """Ids of the runs whose tags and properties match (and whose experiment, parent,
    type, status and lifecycle do), if there are tag or property filters and the matches
    are at most ``MAX_NAMED_MATCHES`` (found through the (key, value, run_id) indexes, then
    each run by its primary key); None otherwise, and the query walks the runs instead."""
    selects = filter_selects(db, query)
    if not selects:
        return None
    sql = _intersect([select for select, _ in selects])
    params: list[Any] = [value for _, values in selects for value in values]
    columns, values = column_filters(query)
    # CROSS JOIN: SQLite then looks each match up by id rather than walking the runs of an
    # experiment (PostgreSQL plans a CROSS JOIN like any other join)
    sql = (
        f"SELECT m.run_id FROM ({sql}) m CROSS JOIN runs r "
        f"WHERE r.id = m.run_id AND {' AND '.join(columns or ['1 = 1'])}"
    )
    params += values
    rows = db.read(f"{sql} LIMIT {MAX_NAMED_MATCHES + 1}", params)
    return None if len(rows) > MAX_NAMED_MATCHES else [r[0] for r in rows]


def check_condition(condition: Condition) -> None:
    """A UserError that says what is wrong with ``condition``, before any SQL."""
    field, op, value = condition.field, condition.op, condition.value
    if field not in CONDITION_FIELDS:
        raise UserError(
            f"a search condition is on {field!r}; it can be on {', '.join(CONDITION_FIELDS)}"
        )
    if op not in CONDITION_OPS:
        raise UserError(f"comparison {op!r} is not one of {', '.join(CONDITION_OPS)}")
    if field == "attribute" and condition.key not in RUN_ATTRIBUTES:
        raise UserError(
            f"runs have no attribute {condition.key!r}; they have {', '.join(RUN_ATTRIBUTES)}"
        )
    numeric = field == "metric" or (field == "attribute" and condition.key in NUMERIC_ATTRIBUTES)
    if op in ("IS NULL", "IS NOT NULL"):
        if value is not None:
            raise UserError(f"{op} takes no value, not {value!r}")
        return
    if numeric and op in ("LIKE", "ILIKE"):
        raise UserError(f"{op} compares text; {field} {condition.key!r} is a number")
    if not numeric and op in ("<", "<=", ">", ">="):
        raise UserError(f"{op} compares numbers; {field} {condition.key!r} is text")
    if op in ("IN", "NOT IN"):
        if not isinstance(value, tuple | list) or not value:
            raise UserError(f"{op} takes a non-empty list of values, not {value!r}")
        values = list(value)
    else:
        values = [value]
    for one in values:
        if numeric and (isinstance(one, bool) or not isinstance(one, int | float)):
            raise UserError(f"{field} {condition.key!r} is compared with numbers, not {one!r}")
        if not numeric and not isinstance(one, str):
            raise UserError(f"{field} {condition.key!r} is compared with text, not {one!r}")


def _compare(db: Database, expression: str, op: str, value: Any) -> tuple[str, list[Any]]:
    if op in ("IN", "NOT IN"):
        return f"{expression} {op} ({', '.join('?' * len(value))})", list(value)
    if op == "LIKE":
        return db.like(expression, value, case_sensitive=True)
    if op == "ILIKE":
        return db.like(expression, value, case_sensitive=False)
    return f"{expression} {op} ?", [value]


def _condition_sql(db: Database, condition: Condition) -> tuple[str, list[Any]]:
    check_condition(condition)
    if condition.field == "attribute":
        column = _ATTRIBUTE_COLUMNS[condition.key]
        if condition.op in ("IS NULL", "IS NOT NULL"):
            return f"{column} {condition.op}", []
        return _compare(db, column, condition.op, condition.value)
    table, key_column, value_column = _KEYED[condition.field]
    if condition.op in ("IS NULL", "IS NOT NULL"):  # the run has (no) such key at all
        has = f"EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.id AND x.{key_column} = ?)"
        return (f"NOT {has}" if condition.op == "IS NULL" else has), [condition.key]
    test, params = _compare(db, f"x.{value_column}", condition.op, condition.value)
    sql = (
        f"EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.id AND x.{key_column} = ? AND {test})"
    )
    return sql, [condition.key, *params]


def _order_sql(db: Database, order: Order, alias: str) -> tuple[str, str | None, list[Any]]:
    """The ORDER BY term of ``order`` and, for a metric, tag or property, the LEFT JOIN
    (as ``alias``) of the run's own row that it sorts by, with its parameters. A join, not
    a subquery per run: sorting 100,000 runs by a metric took 0.3 s on PostgreSQL that way."""
    direction = "DESC" if order.descending else "ASC"
    if order.field == "attribute" and order.key == "duration":  # from start to end, or now
        now = clock_sql(db.dialect)
        return f"COALESCE(r.ended_at, {now}) - r.started_at {direction} NULLS LAST", None, []
    if order.field == "attribute":
        if order.key not in RUN_ATTRIBUTES:
            raise UserError(
                f"runs have no attribute {order.key!r} to sort by; they have "
                f"{', '.join(RUN_ATTRIBUTES)} and duration"
            )
        return f"{_ATTRIBUTE_COLUMNS[order.key]} {direction} NULLS LAST", None, []
    if order.field not in _KEYED:
        raise UserError(f"runs are sorted by {', '.join(CONDITION_FIELDS)}, not by {order.field!r}")
    table, key_column, value_column = _KEYED[order.field]
    join = f"LEFT JOIN {table} {alias} ON {alias}.run_id = r.id AND {alias}.{key_column} = ?"
    return f"{alias}.{value_column} {direction} NULLS LAST", join, [order.key]


def search_sql(
    db: Database,
    query: RunQuery,
    columns: str,
    source: str,
    *,
    after: tuple[float, int] | None,
    limit: int,
    offset: int,
    count: bool = False,
) -> tuple[str, list[Any]] | None:
    """The SELECT of ``columns`` from ``source`` (which names the runs ``r``) for ``query``
    and its parameters; None when no run can match. ``count`` leaves out the order and the
    page, for a ``COUNT(*)`` of every match."""
    if query.order and after is not None:
        raise UserError("a search sorted by `order` pages with an offset, not with `after`")
    if offset < 0:
        raise UserError(f"offset is {offset}; it counts runs to skip, 0 or more")
    where: list[str] = []
    params: list[Any] = []
    prefix = ""
    if query.root_id is not None:
        prefix = (
            "WITH RECURSIVE subtree(id) AS (SELECT id FROM runs WHERE parent_id = ? "
            "UNION ALL SELECT c.id FROM runs c JOIN subtree s ON c.parent_id = s.id) "
        )
        params.append(query.root_id)
        where.append("r.id IN (SELECT id FROM subtree)")
    matched = matching_ids(db, query)
    if matched is not None:
        if not matched:
            return None
        # the matches are few enough to name: both databases then fetch them by primary
        # key and sort only them, whatever their statistics say
        where.append(db.in_list("r.id"))
        params.append(db.list_param(matched))
    else:
        filters, values = column_filters(query)
        where += filters
        params += values
        for select, pair in filter_selects(db, query):
            where.append(f"r.id IN ({select})")
            params.extend(pair)
    if len(query.conditions) > MAX_CONDITIONS:
        raise UserError(
            f"a search has {len(query.conditions)} conditions; at most {MAX_CONDITIONS} (more "
            "would keep the database busy for seconds)"
        )
    for condition in query.conditions:
        sql, values = _condition_sql(db, condition)
        where.append(sql)
        params += values
    if after is not None:
        where.append("(r.created_at < ? OR (r.created_at = ? AND r.number < ?))")
        params.extend((after[0], after[0], after[1]))
    matches = " AND ".join(where) or "1 = 1"
    if count:
        return f"{prefix}SELECT {columns} FROM {source} WHERE {matches}", params
    orders, joins, join_params = [], [], []
    for i, order in enumerate(query.order):
        term, join, values = _order_sql(db, order, f"o{i}")
        orders.append(term)
        if join is not None:
            joins.append(join)
            join_params += values
    orders += ["r.created_at DESC", "r.number DESC", "r.id"]
    if joins:  # the joins' parameters come after the prefix's and before the WHERE's
        first = 1 if query.root_id is not None else 0
        params = params[:first] + join_params + params[first:]
        source = f"{source} {' '.join(joins)}"
    sql = (
        f"{prefix}SELECT {columns} FROM {source} WHERE {matches} "
        f"ORDER BY {', '.join(orders)} LIMIT {int(limit)}"
    )
    if offset:
        sql += f" OFFSET {int(offset)}"
    return sql, params
