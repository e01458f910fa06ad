"""Columnar encoding of metric points: one chunk holds many points of one series.

A chunk stores steps (int64), times (float64) and values. Values are packed as float64
when every value is a float, as int64 when every value is an int, and as JSON otherwise
(strings, bools, None, dict rows, mixtures), so each value comes back with its type.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Sequence
from itertools import islice
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


def encode_values(values: Sequence[Any], kinds: set[type] | None = None) -> tuple[str, bytes]:
    """Pack values; ``kinds`` is ``set(map(type, values))`` when the caller has it."""
    kinds = set(map(type, values)) if kinds is None else kinds
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


def unpack_values(encoding: str, data: bytes) -> Sequence[Any]:
    """Like ``decode_values``, but packed numbers stay packed (an array, no objects)."""
    if encoding == "f8":
        return _unpack("d", data)
    if encoding == "i8":
        return _unpack("q", data)
    return decode_values(encoding, data)


def encode_steps(steps: Sequence[Any]) -> bytes:
    """int64 steps; consecutive steps (the usual case) shrink to a 17-byte range."""
    if isinstance(steps, range) and steps.step == 1:
        return _RANGE + _pack(array("q", (steps.start, len(steps))))
    packed = array("q", steps)
    if len(packed) > 2 and packed == array("q", range(packed[0], packed[0] + len(packed))):
        return _RANGE + _pack(array("q", (packed[0], len(packed))))
    return _pack(packed)


def decode_steps(data: bytes) -> list[int]:
    if len(data) % 8 == 1 and data[:1] == _RANGE:  # a plain int64 array is a multiple of 8
        start, count = _unpack("q", data[1:]).tolist()
        return list(range(start, start + count))
    return _unpack("q", data).tolist()


def unpack_steps(data: bytes) -> range | array[int]:
    """Like ``decode_steps``, but a range stays a range and other steps stay packed."""
    if len(data) % 8 == 1 and data[:1] == _RANGE:
        start, count = _unpack("q", data[1:]).tolist()
        return range(start, start + count)
    return _unpack("q", data)


_RANGE = b"R"


def encode_times(times: Sequence[float]) -> bytes:
    return _pack(array("d", times))


def unpack_times(data: bytes) -> array[float]:
    return _unpack("d", data)


def numeric_range(
    values: Sequence[Any], kinds: set[type] | None = None
) -> tuple[float | None, float | None]:
    """Min and max of the numbers among ``values``; NaN, bools and non-numbers are skipped."""
    kinds = set(map(type, values)) if kinds is None else kinds
    if kinds <= {float, int}:
        # min() and max() skip a NaN anywhere but in first place, so skip leading NaNs
        start = 0
        while start < len(values) and values[start] != values[start]:
            start += 1
        if start == len(values):
            return None, None
        low, high = min(islice(values, start, None)), max(islice(values, start, None))
    else:
        kept = [v for v in values if type(v) in (int, float) and v == v]
        if not kept:
            return None, None
        low, high = min(kept), max(kept)
    try:
        return float(low), float(high)
    except OverflowError:  # an int beyond float range
        return None, None
