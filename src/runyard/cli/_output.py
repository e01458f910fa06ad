"""Rendering command results: json, jsonc, table, tsv, yaml, none — after --query."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

FORMATS = ("json", "jsonc", "table", "tsv", "yaml", "none")
_SKIPPED_IN_TABLES = {"id", "type", "etag"}


def use_color(stream: Any = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def render(
    result: Any,
    fmt: str,
    queried: bool,
    table: Callable[[Any], list[dict[str, Any]]] | None = None,
) -> str:
    if result is None or fmt == "none":
        return ""
    if fmt in ("json", "jsonc"):
        text = json.dumps(
            json_safe(result), indent=2, sort_keys=True, ensure_ascii=False, default=str,
            allow_nan=False,
        )  # fmt: skip
        return _highlight(text) if fmt == "jsonc" and use_color() else text
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(result, default_flow_style=False, allow_unicode=True).rstrip()
    if fmt == "tsv":
        return "\n".join("\t".join(_tsv_cell(v) for v in _row_values(item, queried))
                         for item in _items(result))  # fmt: skip
    if fmt == "table":
        rows = (
            table(result) if table is not None and not queried else _generic_rows(result, queried)
        )
        if not rows:
            return ""
        from tabulate import tabulate

        headers = list(rows[0])
        if use_color():
            headers = [f"\033[1m{h}\033[0m" for h in headers]
        return tabulate([list(r.values()) for r in rows], headers=headers, tablefmt="simple",
                        disable_numparse=True)  # fmt: skip
    raise ValueError(f"unknown output format {fmt!r}")


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def json_safe(value: Any) -> Any:
    """``value`` with NaN and ±infinity as the strings "NaN", "Infinity", "-Infinity".

    Bare ``NaN``/``Infinity`` are not JSON; these strings are what JavaScript's and
    protobuf's JSON mappings use, and they keep NaN apart from None (``null``).
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _items(result: Any) -> list[Any]:
    return result if isinstance(result, list) else [result]


def _row_values(item: Any, queried: bool) -> list[Any]:
    if isinstance(item, dict):
        keys = list(item) if queried else sorted(item)
        return [item[k] for k in keys]
    return [item]


def _tsv_cell(value: Any) -> str:
    if value is None or isinstance(value, dict):
        return ""
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _generic_rows(result: Any, queried: bool) -> list[dict[str, Any]]:
    """knack's rule: one row per item, scalar non-None fields, capitalised headers."""
    rows = []
    for item in _items(result):
        if not isinstance(item, dict):
            rows.append({"Result": item})
            continue
        keys = list(item) if queried else sorted(item)
        row = {
            k[:1].upper() + k[1:]: item[k]
            for k in keys
            if k not in _SKIPPED_IN_TABLES
            and item[k] is not None
            and not isinstance(item[k], dict | list)
        }
        rows.append(row)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return [{c: row.get(c, "") for c in columns} for row in rows]


def local_time(utc: str | None) -> str:
    """``2021-06-23T13:08:03.554Z`` as local time to the second."""
    if not utc:
        return ""
    moment = datetime.fromisoformat(utc.replace("Z", "+00:00"))
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: str | None, end: str | None) -> str:
    if not start:
        return ""
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = (
        datetime.fromisoformat(end.replace("Z", "+00:00")) if end else datetime.now(begin.tzinfo)
    )
    seconds = int((finish - begin).total_seconds())
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


_STATUS_COLORS = {"Completed": "32", "Failed": "31", "Canceled": "33", "Running": "36"}


def status(text: str) -> str:
    code = _STATUS_COLORS.get(text)
    return f"\033[{code}m{text}\033[0m" if code and use_color() else text


def _highlight(text: str) -> str:
    from pygments import highlight
    from pygments.formatters import TerminalFormatter
    from pygments.lexers import JsonLexer

    return highlight(text, JsonLexer(), TerminalFormatter()).rstrip()
