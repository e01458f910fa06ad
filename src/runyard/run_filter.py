"""runyard's run filter: the text a user types to narrow a list of runs.

The studio's search box, ``runyard run list --filter`` and the server's run search read
the same grammar. Clauses are joined by ``and``:

- ``tags.<key>`` / ``properties.<key>`` / ``metrics.<key>`` alone: runs that have it;
- ``tags.<key> = vision``, ``properties.lr >= '0.01'``, ``metrics.acc > 0.9``: a comparison
  (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``like``, ``ilike``, ``in (…)``,
  ``not in (…)``, ``is null``, ``is not null``); a metric compares its last value;
- ``status = Running``, ``number > 10``, ``submitted_by = 'ci-bot'``: a run attribute;
- any other word or quoted text: runs whose display name contains it, in any case (``%``
  and ``_`` in it match any characters and any one character, as in ``like``).

Values are numbers, quoted text (``'…'`` or ``"…"``) or single words. Keys with spaces or
other characters are quoted with backticks: ``tags.`data set` = mnist``.

    >>> [(c.field, c.key, c.op, c.value) for c in parse_run_filter("tags.team = vision and metrics.acc > 0.9")]
    [('tag', 'team', '=', 'vision'), ('metric', 'acc', '>', 0.9)]
"""  # noqa: E501

from __future__ import annotations

from typing import Any

from ._filter_text import Reader, comparator, key_after, unquote
from .errors import UserError
from .records import ALL_STATUSES, NUMERIC_ATTRIBUTES, RUN_ATTRIBUTES, Condition

MAX_FILTER = 10_000  # characters
MAX_CLAUSES = 25
_FIELDS = {
    "tag": "tag", "tags": "tag",
    "property": "property", "properties": "property", "prop": "property", "props": "property",
    "metric": "metric", "metrics": "metric",
    "attribute": "attribute", "attributes": "attribute",
}  # fmt: skip
_STATUS_NAMES = {s.lower(): s for s in ALL_STATUSES}


def parse_run_filter(text: Any) -> tuple[Condition, ...]:
    """The conditions of a run filter (none for empty text); a UserError says what in the
    text could not be read."""
    if text is None or text == "":
        return ()
    if not isinstance(text, str):
        raise UserError(f"a run filter is text, not {type(text).__name__}")
    if len(text) > MAX_FILTER:
        raise UserError(f"the run filter has {len(text)} characters; at most {MAX_FILTER}")
    if not text.strip():
        return ()
    reader = Reader(text)
    conditions: list[Condition] = []
    while True:
        if len(conditions) >= MAX_CLAUSES:
            raise reader.fail(f"it has more than {MAX_CLAUSES} clauses")
        conditions.append(_clause(reader))
        joiner = reader.peek()
        if joiner is None:
            return tuple(conditions)
        reader.take()
        if joiner[0] != "word" or joiner[1].lower() != "and":
            raise reader.fail(
                f"clauses are joined with 'and', not {joiner[1]!r} (there is no 'or')"
            )


def _clause(reader: Reader) -> Condition:
    token = reader.take()
    following = reader.peek()
    ends = following is None or (following[0] == "word" and following[1].lower() == "and")
    if token[0] in ("string", "backquoted") or (token[0] == "word" and ends and not _named(token)):
        return Condition("attribute", "display_name", "ILIKE", f"%{unquote(token)}%")
    if token[0] == "number" and ends:
        return Condition("attribute", "display_name", "ILIKE", f"%{token[1]}%")
    field, key = _identifier(reader, token)
    if ends:
        if field == "attribute":
            raise reader.fail(f"compare {key} with a value, such as {key} = …")
        return Condition(field, key, "IS NOT NULL", None)
    op = comparator(reader)
    if op in ("IS NULL", "IS NOT NULL"):
        value: Any = None
    elif op in ("IN", "NOT IN"):
        if reader.take()[0] != "open":
            raise reader.fail(f"{op.lower()} takes a list in parentheses: ('a', 'b')")
        values = [_value(reader, field, key)]
        while (token := reader.take())[0] == "comma":
            values.append(_value(reader, field, key))
        if token[0] != "close":
            raise reader.fail("expected ',' or ')' in the list")
        value = tuple(values)
    else:
        value = _value(reader, field, key)
        if op in ("LIKE", "ILIKE") and not isinstance(value, str):
            raise reader.fail(f"{op.lower()} takes a quoted pattern such as 'res%'")
    return Condition(field, key, op, value)


def _named(token: tuple[str, str]) -> bool:
    """Is this word a field (``tags.x``, ``metrics.acc``) or an attribute name?"""
    head, dot, _ = token[1].partition(".")
    return bool(dot and head.lower() in _FIELDS) or token[1] in RUN_ATTRIBUTES


def _identifier(reader: Reader, token: tuple[str, str]) -> tuple[str, str]:
    if token[0] not in ("word", "backquoted"):
        raise reader.fail(f"expected a name such as tags.team or metrics.acc, not {token[1]!r}")
    head, _, rest = token[1].partition(".")
    field = _FIELDS.get(head.lower()) if token[0] == "word" else None
    if field is None:
        name = unquote(token)
        if name not in RUN_ATTRIBUTES:
            raise reader.fail(
                f"{name!r} is not tags.<key>, properties.<key>, metrics.<key> or a run "
                f"attribute ({', '.join(RUN_ATTRIBUTES)})"
            )
        return "attribute", name
    if not rest:  # tags.`a key`
        rest = key_after(reader, head)
    if field == "attribute" and rest not in RUN_ATTRIBUTES:
        raise reader.fail(f"{rest!r} is not a run attribute ({', '.join(RUN_ATTRIBUTES)})")
    return field, rest


def _value(reader: Reader, field: str, key: str) -> Any:
    token = reader.take()
    if token[0] not in ("string", "number", "word"):
        raise reader.fail(f"expected a value, not {token[1]!r}")
    numeric = field == "metric" or (field == "attribute" and key in NUMERIC_ATTRIBUTES)
    if numeric:
        if token[0] != "number":
            raise reader.fail(f"{key} is compared with a number, not {token[1]!r}")
        number = float(token[1])
        if number != number or number in (float("inf"), float("-inf")):
            raise reader.fail(f"{token[1]!r} is not a finite number")
        return number
    text = unquote(token)
    if field == "attribute" and key == "status":
        status = _STATUS_NAMES.get(text.lower())
        if status is None:
            raise reader.fail(f"{text!r} is not a status; these are: {', '.join(ALL_STATUSES)}")
        return status
    return text
