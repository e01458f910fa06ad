"""MLflow's ``search_runs`` grammar as runyard search conditions and orders.

A filter is clauses joined by ``AND``: ``<identifier> <comparator> <value>``, where the
identifier is ``metrics.<key>``, ``params.<key>``, ``tags.<key>`` or an attribute
(``attributes.<name>`` or a bare name). Keys with spaces, dashes or dots are quoted with
``"…"`` or backticks; a dotted key may also stand unquoted (``tags.mlflow.user``). Metric
and time comparisons take numbers; the others quoted text, ``IN (…)`` a list of them.

    >>> [c.op for c in parse_filter("metrics.acc > 0.9 and params.model = 'ridge'")]
    ['>', '=']
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import defaultdict
from typing import Any

from ..._filter_text import Reader, comparator, key_after, unquote
from ...errors import UserError
from ...records import Condition, Order, RunQuery, RunRecord, SeriesSummary
from .convert import MAX_TIMESTAMP, MS_SLACK, NOTE, PARENT, RUN_NAME, STATUS_TO_MLFLOW

_TYPES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "property",
    "params": "property",
    "parameter": "property",
    "parameters": "property",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
# MLflow's attribute names (and aliases) as runyard's, with the kind of value they take
_ATTRIBUTES = {
    "run_id": ("id", "text"),
    "run_name": ("display_name", "text"),
    "run name": ("display_name", "text"),
    "name": ("display_name", "text"),  # a logged model's
    "status": ("status", "status"),
    "user_id": ("submitted_by", "text"),
    "start_time": ("start", "time"),
    "created": ("start", "time"),
    "end_time": ("end", "time"),
}
_FIELD_TAGS = {RUN_NAME: "display_name", PARENT: "parent_id", NOTE: "description"}
MAX_RESULTS = 50_000
MAX_FILTER, MAX_CLAUSES = 10_000, 25  # a longer search could hold the server for seconds


def _identifier(reader: Reader) -> tuple[str, str]:
    """(runyard field, key) of the identifier at the reader."""
    token = reader.take()
    if token[0] in ("string", "backquoted"):
        return _attribute(reader, unquote(token))
    if token[0] != "word":
        raise reader.fail(f"expected a name such as metrics.acc, not {token[1]!r}")
    head, _, rest = token[1].partition(".")
    kind = _TYPES.get(head.lower())
    if kind is None:
        if head.lower() in ("dataset", "datasets"):
            raise reader.fail("runyard keeps no datasets; filter on metrics, params or tags")
        if rest:
            raise reader.fail(
                f"{head!r} is not metrics, params, tags or attributes (the part before '.')"
            )
        return _attribute(reader, token[1])
    if not rest:
        rest = key_after(reader, head)
    if kind == "attribute":
        return _attribute(reader, rest)
    if kind == "tag" and rest in _FIELD_TAGS:
        return "attribute", _FIELD_TAGS[rest]
    return kind, rest


def _attribute(reader: Reader, name: str) -> tuple[str, str]:
    found = _ATTRIBUTES.get(name) or _ATTRIBUTES.get(name.lower())
    if found is None:
        raise reader.fail(
            f"{name!r} is not a searchable attribute; these are: "
            "run_id, run_name, status, user_id, start_time, end_time"
        )
    return "attribute", found[0]


def _value_kind(field: str, key: str) -> str:
    if field == "metric":
        return "number"
    if field == "attribute":
        for name, kind in _ATTRIBUTES.values():
            if name == key:
                return "time" if kind == "time" else ("status" if kind == "status" else "text")
    return "text"


def _value(reader: Reader, kind: str) -> Any:
    token = reader.take()
    if kind in ("number", "time"):
        if token[0] != "number":
            raise reader.fail(f"expected a number, not {token[1]!r}")
        value = float(token[1])
        if kind == "time" and not abs(value) <= MAX_TIMESTAMP:
            raise reader.fail(f"a time is at most {MAX_TIMESTAMP} ms, not {token[1][:30]}")
        return value
    if token[0] not in ("string",):
        raise reader.fail(f"expected a quoted value, not {token[1]!r}")
    return unquote(token)


def _status_values(reader: Reader, op: str, values: list[str]) -> tuple[str, tuple[str, ...]]:
    """A condition on MLflow status names as one on runyard's statuses."""
    names = STATUS_TO_MLFLOW.values()
    if op in ("LIKE", "ILIKE"):
        flags = re.IGNORECASE if op == "ILIKE" else 0
        pattern = "".join(
            ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in values[0]
        )
        chosen = {n for n in names if re.fullmatch(pattern, n, flags)}
        op = "IN"
    elif op in ("=", "!=", "IN", "NOT IN"):
        chosen = set(values)
        op = "IN" if op in ("=", "IN") else "NOT IN"
    else:
        raise reader.fail(f"status is compared with =, !=, LIKE, ILIKE or IN, not {op}")
    statuses = tuple(s for s, name in STATUS_TO_MLFLOW.items() if name in chosen)
    return op, statuses or ("(none)",)


def _time_conditions(field: str, key: str, op: str, value: Any) -> list[Condition]:
    """A comparison with a time in whole milliseconds (as MLflow shows times: the seconds
    runyard keeps, times 1000, rounded down) as conditions on the seconds."""
    if isinstance(value, tuple):
        return [Condition(field, key, op, tuple(v / 1000 for v in value))]
    low = (math.ceil(value) - MS_SLACK) / 1000  # the seconds shown as ``value`` ms or more
    high = (math.floor(value) + 1 - MS_SLACK) / 1000  # ... as more than ``value`` ms
    if op == "=":
        return [Condition(field, key, ">=", low), Condition(field, key, "<", high)]
    bound = {">=": (">=", low), ">": (">=", high), "<=": ("<", high), "<": ("<", low)}
    op, limit = bound.get(op, (op, low))
    return [Condition(field, key, op, limit)]


def parse_filter(text: Any) -> list[Condition]:
    """The conditions of an MLflow filter string (empty: none)."""
    if not text:
        return []
    if not isinstance(text, str):
        raise UserError("Invalid value for parameter 'filter' supplied: text")
    if len(text) > MAX_FILTER:
        raise UserError(f"Invalid filter: it has {len(text)} characters; at most {MAX_FILTER}")
    if not text.strip():
        return []
    reader = Reader(text)
    conditions: list[Condition] = []
    while True:
        field, key = _identifier(reader)
        op = comparator(reader)
        kind = _value_kind(field, key)
        if op in ("IS NULL", "IS NOT NULL"):
            if field not in ("tag", "property"):
                raise reader.fail("IS NULL / IS NOT NULL is only supported for tags and params")
            value: Any = None
        elif op in ("IN", "NOT IN"):
            if reader.take()[0] != "open":
                raise reader.fail(f"{op} takes a list in parentheses: ('a', 'b')")
            values = [_value(reader, kind)]
            while (token := reader.take())[0] == "comma":
                values.append(_value(reader, kind))
            if token[0] != "close":
                raise reader.fail("expected ',' or ')' in the list")
            value = tuple(values)
        else:
            value = _value(reader, kind)
        if kind == "status":
            op, value = _status_values(
                reader, op, list(value) if op in ("IN", "NOT IN") else [value]
            )
        if len(conditions) >= MAX_CLAUSES:
            raise reader.fail(f"it has more than {MAX_CLAUSES} clauses")
        if kind == "time":
            conditions += _time_conditions(field, key, op, value)
        else:
            conditions.append(Condition(field, key, op, value))
        joiner = reader.peek()
        if joiner is None:
            return conditions
        reader.take()
        if joiner[0] != "word" or joiner[1].upper() != "AND":
            raise reader.fail(
                f"clauses are joined with AND, not {joiner[1]!r} (there is no OR or parentheses)"
            )


def parse_order(items: list[str] | None) -> tuple[Order, ...]:
    """MLflow's ``order_by`` (``"metrics.rmse"``, ``"params.lr DESC"``) as runyard orders."""
    orders = []
    for item in items or []:
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"Invalid order_by clause {item!r}")
        reader = Reader(item)
        field, key = _identifier(reader)
        descending = False
        token = reader.peek()
        if token is not None:
            reader.take()
            if token[0] != "word" or token[1].upper() not in ("ASC", "DESC"):
                raise reader.fail("an order_by clause ends with ASC or DESC, or nothing")
            descending = token[1].upper() == "DESC"
            if reader.peek() is not None:
                raise reader.fail("one column per order_by clause")
        orders.append(Order(field, key, descending))
    return tuple(orders)


def page_offset(token: Any) -> int:
    if not token:
        return 0
    if not isinstance(token, str):
        raise UserError("Invalid value for parameter 'page_token' supplied: text")
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        offset = data["offset"]
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**62:
            raise ValueError(offset)
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        raise UserError(f"Invalid page token {token[:100]!r}") from None
    return offset


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def max_results(value: Any, default: int = 1000, limit: int = MAX_RESULTS) -> int:
    if value is None or value == "":
        return default
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise UserError(f"Invalid value {value!r} for parameter 'max_results' supplied") from None
    if not 1 <= count <= limit:
        raise UserError(
            f"Invalid value {count} for parameter 'max_results' supplied. It must be at most "
            f"{limit}, and at least 1."
        )
    return count


def search_page(
    store: Any, query: RunQuery, count: int, offset: int
) -> tuple[list[RunRecord], dict[str, list[SeriesSummary]], str | None]:
    """One page of a search: its runs, their series summaries by run id, and the token of
    the next page (None on the last)."""
    records = store.search_runs(query, limit=count + 1, offset=offset)
    more = len(records) > count
    records = records[:count]
    series: dict[str, list[SeriesSummary]] = defaultdict(list)
    for summary in store.list_series([r.id for r in records]):
        series[summary.run_id].append(summary)
    return records, series, page_token(offset + count) if more else None
