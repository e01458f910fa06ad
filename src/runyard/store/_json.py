"""JSON as runyard's client and server exchange it: standard JSON, with non-finite floats.

JSON has no NaN or infinity, but a metric's last value may be NaN and a run definition may
hold ``inf``. Such a float travels as ``{"$float": "NaN"}`` (or ``"Infinity"``,
``"-Infinity"``) and comes back as the same float; everything else is plain JSON.

    >>> loads(dumps({"last": float("inf")}))
    {'last': inf}
"""

from __future__ import annotations

import json
import math
from typing import Any

TAG = "$float"
MAX_DEPTH = 200  # levels of objects and lists in one value
_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def dumps(value: Any) -> bytes:
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(tag(value), allow_nan=False, separators=(",", ":"))
    return text.encode()


def loads(data: bytes | str) -> Any:
    value = json.loads(data)
    probe = TAG if isinstance(data, str) else TAG.encode()
    return untag(value) if probe in data else value  # type: ignore[operator]


def tag(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its tagged form."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {TAG: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {k: tag(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tag(v) for v in value]
    return value


def untag(value: Any, _depth: int = 0) -> Any:
    """The inverse of ``tag``: tagged floats back to floats, everything else as it was.

    Objects and lists nested deeper than ``MAX_DEPTH`` are a UserError (not a crash of the
    interpreter's recursion limit)."""
    if isinstance(value, dict | list) and _depth >= MAX_DEPTH:
        from ..errors import UserError

        raise UserError(f"a JSON value is nested more than {MAX_DEPTH} levels deep; flatten it")
    if isinstance(value, dict):
        if len(value) == 1 and TAG in value and value[TAG] in _NAMES:
            return _NAMES[value[TAG]]
        return {k: untag(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [untag(v, _depth + 1) for v in value]
    return value
