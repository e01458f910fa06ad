"""Columnar encoding of metric points: one chunk holds many points of one series.

A chunk stores steps (int64), times (float64) and values. Values are packed as float64
when every value is a float, as int64 when every value is an int, and as JSON otherwise
(strings, bools, None, dict rows, mixtures), so each value comes back with its type.
"""

from __future__ import annotations

import json
import math
import sys
from array import array
from typing import Any

_LITTLE = sys.byteorder == "little"
_INT64 = (-(2**63), 2**63 - 1)


def _pack(arr: array[Any]) -> bytes:
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _unpack(typecode: str, data: bytes) -> array[Any]:
    arr = array(typecode)
    arr.frombytes(data)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        arr.byteswap()
    return arr


def encode_values(values: list[Any]) -> tuple[str, bytes]:
    kinds = set(map(type, values))
    if kinds == {float}:
        return "f8", _pack(array("d", values))
    if kinds == {int} and _INT64[0] <= min(values) and max(values) <= _INT64[1]:
        return "i8", _pack(array("q", values))
    return "json", json.dumps(values, separators=(",", ":")).encode()


def decode_values(encoding: str, data: bytes) -> list[Any]:
    if encoding == "f8":
        return _unpack("d", data).tolist()
    if encoding == "i8":
        return _unpack("q", data).tolist()
    if encoding == "json":
        result: list[Any] = json.loads(data)
        return result
    raise ValueError(f"unknown metric chunk encoding {encoding!r}")


def encode_steps(steps: list[int]) -> bytes:
    return _pack(array("q", steps))


def decode_steps(data: bytes) -> list[int]:
    return _unpack("q", data).tolist()


def encode_times(times: list[float]) -> bytes:
    return _pack(array("d", times))


def decode_times(data: bytes) -> list[float]:
    return _unpack("d", data).tolist()


def numeric_range(values: list[Any]) -> tuple[float | None, float | None]:
    """Min and max of the finite-or-infinite numbers among ``values`` (NaN and bools skipped)."""
    kinds = set(map(type, values))
    if kinds <= {float, int}:
        numbers = values if float not in kinds else [v for v in values if v == v]
    else:
        numbers = [
            v
            for v in values
            if type(v) in (int, float) and not (type(v) is float and math.isnan(v))
        ]
    if not numbers:
        return None, None
    return float(min(numbers)), float(max(numbers))
