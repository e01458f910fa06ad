"""The binary codec of metric data between ``RestStore`` and the runyard server.

A payload is a 4-byte magic (``RYB1`` for a batch, ``RYH1`` for histories), a version byte,
then columns. Per series: name, kind, description (histories: a values-only flag), the point
count, steps, times and values. Numbers travel packed, little-endian: steps as int64 (or as
one ``start`` when they are consecutive, or nothing when every step is ``None``; a mask
marks the ``None`` steps of a mixed list), times as float64, values as float64 when all are
floats, as int64 when all are ints in range, as JSON otherwise (Python's JSON, which carries
NaN and infinities exactly). Every column is a blob: zlib level 1 when it is JSON or small,
raw when it is a large packed array (random floats barely shrink, and zlib would cost
several times the rest of the work).

``decode_batch`` and ``decode_histories`` trust nothing: any defect raises ``UserError``,
a payload over a limit ``TooLarge``, and never anything else.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from typing import Any

from .._validation import check_name, check_text
from ..errors import TooLarge, UserError
from ..records import Column, MetricHistory, SeriesAppend

BATCH_TYPE = "application/vnd.runyard.batch"
HISTORY_TYPE = "application/vnd.runyard.history"

_BATCH_MAGIC = b"RYB1"
_HISTORY_MAGIC = b"RYH1"
_VERSION = 1
_LITTLE = sys.byteorder == "little"
_INT64 = (-(2**63), 2**63 - 1)
_DESCRIPTION_LIMIT = 5000  # what the SDK's buffer allows
_COMPRESS_BELOW = 256 * 1024  # packed columns above this go raw; JSON is always compressed

# steps modes
_S_NONE, _S_RANGE, _S_PACKED, _S_MIXED = 0, 1, 2, 3
# value encodings
_V_F8, _V_I8, _V_JSON = 0, 1, 2
# blob codecs
_RAW, _ZLIB = 0, 1

_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_BLOB_HEAD = struct.Struct("<BQQ")  # codec, decoded size, stored size
_SCALARS = frozenset({float, int, str, bool, type(None)})
_VALUE_TYPES = _SCALARS | {dict}


# ----------------------------------------------------------------------------- encoding


def encode_batch(series: Sequence[SeriesAppend]) -> bytes:
    """The payload of ``series`` (a ``log_batch``); ``UserError`` for what cannot be sent."""
    out = [_BATCH_MAGIC]
    out.append(_U8.pack(_VERSION))
    out.append(_U32.pack(len(series)))
    for s in series:
        n = len(s.values)
        if len(s.steps) != n or len(s.times) != n:
            raise UserError(
                f"metric {s.name!r}: {n} values, {len(s.steps)} steps and {len(s.times)} "
                "times; every point needs one of each"
            )
        _put_text(out, s.name)
        _put_text(out, s.kind)
        _put_text(out, s.description)
        out.append(_U64.pack(n))
        _put_steps(out, s.steps, n, s.name, allow_none=True)
        _put_times(out, s.times, s.name)
        _put_values(out, s.values, s.name)
    return b"".join(out)


def encode_histories(histories: dict[str, list[MetricHistory]]) -> bytes:
    """The payload of a ``get_histories`` result (``values_only`` results included)."""
    out = [_HISTORY_MAGIC]
    out.append(_U8.pack(_VERSION))
    out.append(_U32.pack(len(histories)))
    for run_id, items in histories.items():
        _put_text(out, run_id)
        out.append(_U32.pack(len(items)))
        for h in items:
            n = len(h.values)
            values_only = n > 0 and len(h.steps) == 0 and len(h.times) == 0
            if not values_only and (len(h.steps) != n or len(h.times) != n):
                raise UserError(
                    f"metric {h.name!r}: {n} values, {len(h.steps)} steps and {len(h.times)} "
                    "times; every point needs one of each"
                )
            _put_text(out, h.name)
            _put_text(out, h.kind)
            out.append(_U8.pack(values_only))
            out.append(_U64.pack(n))
            if not values_only:
                _put_steps(out, h.steps, n, h.name, allow_none=False)
                _put_times(out, h.times, h.name)
            _put_values(out, h.values, h.name)
    return b"".join(out)


def _put_text(out: list[bytes], text: str) -> None:
    try:
        data = text.encode()
    except (AttributeError, UnicodeEncodeError) as exc:
        raise UserError(f"cannot send {text!r} as metric text: {exc}") from None
    out.append(_U32.pack(len(data)))
    out.append(data)


def _put_blob(out: list[bytes], data: bytes, compress: bool) -> None:
    if compress and data:
        packed = zlib.compress(data, 1)
        if len(packed) < len(data):
            out.append(_BLOB_HEAD.pack(_ZLIB, len(data), len(packed)))
            out.append(packed)
            return
    out.append(_BLOB_HEAD.pack(_RAW, len(data), len(data)))
    out.append(data)


def _pack(arr: array[Any]) -> bytes:
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        arr = array(arr.typecode, arr)
        arr.byteswap()
    return arr.tobytes()


def _unwrap(column: Sequence[Any]) -> Sequence[Any]:
    """The packed array or range under a ``Column``, else the column itself."""
    data = getattr(column, "_data", None) if isinstance(column, Column) else None
    return data if isinstance(data, array | range | list) else column


def _put_steps(
    out: list[bytes], steps: Sequence[Any], n: int, name: str, *, allow_none: bool
) -> None:
    steps = _unwrap(steps)
    if isinstance(steps, range) and (steps.step == 1 or n <= 1):
        out.append(_U8.pack(_S_RANGE) + _I64.pack(steps.start if n else 0))
        return
    mask = None
    try:
        if isinstance(steps, array) and steps.typecode == "q":
            packed = steps
        else:
            try:
                packed = array("q", steps)
            except TypeError:
                nones = steps.count(None) if allow_none else 0
                if not nones:
                    raise
                if nones == n:
                    out.append(_U8.pack(_S_NONE))
                    return
                mask = bytes([s is None for s in steps])
                packed = array("q", [0 if s is None else s for s in steps])
    except (TypeError, OverflowError) as exc:
        raise UserError(
            f"metric {name!r} has a step that cannot be sent ({exc}): steps are 64-bit "
            f"integers{' or None' if allow_none else ''}"
        ) from None
    data = _pack(packed)
    if mask is None:
        start = packed[0] if n else 0
        likely = n > 2 and packed[-1] - start == n - 1 and packed[1] - start == 1
        if likely and data == _consecutive(start, n):  # O(1) checks first, then every step
            out.append(_U8.pack(_S_RANGE) + _I64.pack(start))
            return
        out.append(_U8.pack(_S_PACKED))
        _put_blob(out, data, len(data) <= _COMPRESS_BELOW)
    else:
        out.append(_U8.pack(_S_MIXED))
        _put_blob(out, data, len(data) <= _COMPRESS_BELOW)
        _put_blob(out, mask, True)


def _consecutive(start: int, n: int) -> bytearray:
    """The little-endian int64 bytes of ``range(start, start + n)``, built a byte lane at a
    time (lane k of the value ``v`` is ``(v >> 8k) & 255``): four times faster than
    ``array("q", range(...))``, which makes an int object per step."""
    out = bytearray(8 * n)
    cycle = bytes(range(256))
    for lane in range(8):
        shift = 8 * lane
        first = (start >> shift) & 255
        if lane == 0:
            lane_bytes = ((cycle[first:] + cycle[:first]) * (n // 256 + 1))[:n]
        else:
            block = 1 << shift  # each byte of this lane repeats this many times
            lead = min(block - start % block, n)
            parts = [bytes((first,)) * lead]
            left, value = n - lead, first
            while left > 0:
                value = (value + 1) & 255
                take = min(block, left)
                parts.append(bytes((value,)) * take)
                left -= take
            lane_bytes = b"".join(parts)
        out[lane::8] = lane_bytes
    return out


def _put_times(out: list[bytes], times: Sequence[Any], name: str) -> None:
    times = _unwrap(times)
    try:
        packed = times if isinstance(times, array) and times.typecode == "d" else array("d", times)
    except (TypeError, OverflowError) as exc:
        raise UserError(
            f"metric {name!r} has a time that cannot be sent ({exc}): times are numbers"
        ) from None
    data = _pack(packed)
    _put_blob(out, data, len(data) <= _COMPRESS_BELOW)


def _put_values(out: list[bytes], values: Sequence[Any], name: str) -> None:
    values = _unwrap(values)
    if isinstance(values, array) and values.typecode in "dq":
        data = _pack(values)
        out.append(_U8.pack(_V_F8 if values.typecode == "d" else _V_I8))
        _put_blob(out, data, len(data) <= _COMPRESS_BELOW)
        return
    kinds = set(map(type, values))
    if kinds == {float}:
        data = _pack(array("d", values))
        out.append(_U8.pack(_V_F8))
        _put_blob(out, data, len(data) <= _COMPRESS_BELOW)
        return
    if kinds == {int} and _INT64[0] <= min(values) and max(values) <= _INT64[1]:
        data = _pack(array("q", values))
        out.append(_U8.pack(_V_I8))
        _put_blob(out, data, len(data) <= _COMPRESS_BELOW)
        return
    listed = list(values)
    problem = _check_values(listed, kinds)
    if problem:
        raise UserError(f"metric {name!r} has a value that cannot be sent: {problem}")
    try:
        text = json.dumps(listed, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise UserError(f"metric {name!r} has a value that cannot be sent: {exc}") from None
    out.append(_U8.pack(_V_JSON))
    _put_blob(out, text.encode(), True)  # ASCII: json escapes the rest


def _check_values(values: list[Any], kinds: set[type]) -> str | None:
    """Why ``values`` are not metric values (scalars, or dicts of str to scalars), or None."""
    if not kinds <= _VALUE_TYPES:
        bad = next(v for v in values if type(v) not in _VALUE_TYPES)
        return (
            f"{type(bad).__name__} {bad!r}: values are numbers, strings, booleans, None "
            "or dicts of them"
        )
    if dict in kinds:
        for v in values:
            if type(v) is dict:
                for key, item in v.items():
                    if type(key) is not str or type(item) not in _SCALARS:
                        return (
                            f"dict {v!r}: a table row maps column names (strings) to numbers, "
                            "strings, booleans or None"
                        )
    return None


# ----------------------------------------------------------------------------- decoding


def decode_batch(
    data: bytes, *, max_points: int = 10_000_000, max_bytes: int | None = None
) -> list[SeriesAppend]:
    """The series of a batch payload, checked through: ``UserError`` for a malformed payload,
    ``TooLarge`` for one over ``max_points`` points or ``max_bytes`` decoded bytes (by
    default 64 bytes a point of ``max_points``)."""
    reader = _Reader(data, "metric batch", max_points, max_bytes)
    try:
        result = _decode_batch(reader)
    except UserError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, RecursionError) as exc:
        raise reader.bad(f"{type(exc).__name__}: {exc}") from None
    except MemoryError:
        raise TooLarge("metric batch does not fit in memory") from None
    return result


def decode_histories(data: bytes) -> dict[str, list[MetricHistory]]:
    """The ``get_histories`` result of a payload; packed columns stay packed (``Column``)."""
    reader = _Reader(data, "metric histories", None, None)
    try:
        return _decode_histories(reader)
    except UserError:
        raise
    except (ValueError, TypeError, OverflowError, IndexError, KeyError, RecursionError) as exc:
        raise reader.bad(f"{type(exc).__name__}: {exc}") from None
    except MemoryError:
        raise TooLarge("metric histories do not fit in memory") from None


def _decode_batch(r: _Reader) -> list[SeriesAppend]:
    r.header(_BATCH_MAGIC)
    count = r.u32()
    result = []
    for _ in range(count):
        name = r.checked(check_name, r.text("metric name"), "metric name")
        kind = r.checked(check_name, r.text("metric kind"), f"kind of metric {name!r}")
        what = f"description of metric {name!r}"
        description = r.checked(check_text, r.text(what), what, _DESCRIPTION_LIMIT)
        n = r.points(name)
        steps = r.steps(n, name, allow_none=True)
        times = r.times(n, name)
        values = r.values(n, name)
        # packed columns stay packed (a range, arrays): the store packs them without a
        # Python object per point
        result.append(SeriesAppend(name, kind, steps, values, times, description))
    r.end()
    return result


def _decode_histories(r: _Reader) -> dict[str, list[MetricHistory]]:
    r.header(_HISTORY_MAGIC)
    result: dict[str, list[MetricHistory]] = {}
    for _ in range(r.u32()):
        run_id = r.checked(check_text, r.text("run id"), "run id")
        if run_id in result:
            raise r.bad(f"run {run_id!r} appears twice")
        items = result[run_id] = []
        for _ in range(r.u32()):
            name = r.checked(check_text, r.text("metric name"), "metric name")
            kind = r.checked(check_text, r.text("metric kind"), f"kind of metric {name!r}")
            flag = r.u8()
            if flag > 1:
                raise r.bad(f"metric {name!r} has values-only flag {flag}")
            n = r.points(name)
            if flag:
                values = r.values(n, name)  # as the SQL store gives them: a list
                listed = values.tolist() if isinstance(values, array) else list(values)
                items.append(MetricHistory(name, kind, [], listed, []))
                continue
            steps = r.steps(n, name, allow_none=False)
            times = r.times(n, name)
            values = r.values(n, name)
            items.append(MetricHistory(name, kind, Column(steps), Column(values), Column(times)))
    r.end()
    return result


def _unpack(typecode: str, data: bytes) -> array[Any]:
    arr = array(typecode)
    arr.frombytes(data)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        arr.byteswap()
    return arr


class _Reader:
    """Reads a payload front to back; every read checks what is left and what it costs."""

    def __init__(
        self, data: bytes, what: str, max_points: int | None, max_bytes: int | None
    ) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UserError(f"malformed {what}: expected bytes, got {type(data).__name__}")
        self.data = memoryview(data).cast("B") if isinstance(data, memoryview) else data
        self.pos = 0
        self.what = what
        self.max_points = max_points
        if max_bytes is None and max_points is not None:
            max_bytes = max(64 * max_points, 1 << 20)
        self.max_bytes = max_bytes
        self.points_seen = 0
        self.bytes_seen = 0

    def bad(self, problem: str) -> UserError:
        return UserError(f"malformed {self.what}: {problem} (at byte {self.pos})")

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise self.bad(f"truncated: {size} more bytes needed, {len(self.data) - self.pos} left")
        chunk = bytes(self.data[self.pos : end])
        self.pos = end
        return chunk

    def _struct(self, fmt: struct.Struct) -> Any:
        if self.pos + fmt.size > len(self.data):
            raise self.bad("truncated")
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def u8(self) -> int:
        return int(self._struct(_U8))

    def u32(self) -> int:
        return int(self._struct(_U32))

    def u64(self) -> int:
        return int(self._struct(_U64))

    def i64(self) -> int:
        return int(self._struct(_I64))

    def header(self, magic: bytes) -> None:
        if bytes(self.data[:4]) != magic:
            raise self.bad(f"it does not start with {magic!r}")
        self.pos = 4
        version = self.u8()
        if version != _VERSION:
            raise self.bad(f"version {version}; this runyard reads version {_VERSION}")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.bad(f"{len(self.data) - self.pos} bytes of trailing garbage")

    def checked(self, check: Any, text: str, *args: Any) -> str:
        """``text`` once ``check`` (a ``_validation`` function) accepts it."""
        try:
            check(text, *args)
        except TooLarge:
            raise
        except UserError as exc:
            raise self.bad(str(exc)) from None
        return text

    def text(self, what: str) -> str:
        size = self.u32()
        raw = self.take(size)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.bad(f"{what} is not valid UTF-8") from None

    def points(self, name: str) -> int:
        n = self.u64()
        self.points_seen += n
        if self.max_points is not None and self.points_seen > self.max_points:
            raise TooLarge(
                f"metric batch holds more than {self.max_points} points (the limit of one "
                "request): send fewer points at a time"
            )
        return n

    def blob(self, expected: int | None, what: str) -> bytes:
        codec, size, stored = self._struct_blob()
        if expected is not None and size != expected:
            raise self.bad(f"{what} takes {size} bytes; {expected} expected")
        self.bytes_seen += size
        if self.max_bytes is not None and self.bytes_seen > self.max_bytes:
            raise TooLarge(
                f"{self.what} decodes to more than {self.max_bytes} bytes (the limit of one "
                "request): send fewer points at a time"
            )
        body = self.take(stored)
        if codec == _RAW:
            if stored != size:
                raise self.bad(f"{what} is stored raw in {stored} bytes but declares {size}")
            return body
        if codec != _ZLIB:
            raise self.bad(f"{what} has unknown compression {codec}")
        inflater = zlib.decompressobj()
        try:
            plain = inflater.decompress(body, size + 1) if size else inflater.decompress(body, 1)
        except zlib.error as exc:
            raise self.bad(f"{what} does not decompress ({exc})") from None
        if len(plain) != size or not inflater.eof or inflater.unused_data:
            raise self.bad(f"{what} decompresses to other than its declared {size} bytes")
        return plain

    def _struct_blob(self) -> tuple[int, int, int]:
        if self.pos + _BLOB_HEAD.size > len(self.data):
            raise self.bad("truncated")
        codec, size, stored = _BLOB_HEAD.unpack_from(self.data, self.pos)
        self.pos += _BLOB_HEAD.size
        return codec, size, stored

    def steps(self, n: int, name: str, *, allow_none: bool) -> list[Any] | array[Any] | range:
        mode = self.u8()
        if mode == _S_RANGE:
            start = self.i64()
            if start + n - 1 > _INT64[1]:
                raise self.bad(f"steps of metric {name!r} go beyond 64 bits")
            return range(start, start + n)
        if mode == _S_PACKED:
            return _unpack("q", self.blob(8 * n, f"steps of metric {name!r}"))
        if allow_none and mode == _S_NONE:
            return [None] * n
        if allow_none and mode == _S_MIXED:
            packed = _unpack("q", self.blob(8 * n, f"steps of metric {name!r}"))
            mask = self.blob(n, f"step mask of metric {name!r}")
            if mask.strip(b"\x00\x01"):
                raise self.bad(f"step mask of metric {name!r} holds other bytes than 0 and 1")
            return [None if m else s for s, m in zip(packed, mask, strict=True)]
        raise self.bad(f"steps of metric {name!r} have unknown mode {mode}")

    def times(self, n: int, name: str) -> array[float]:
        return _unpack("d", self.blob(8 * n, f"times of metric {name!r}"))

    def values(self, n: int, name: str) -> list[Any] | array[Any]:
        encoding = self.u8()
        what = f"values of metric {name!r}"
        if encoding == _V_F8:
            return _unpack("d", self.blob(8 * n, what))
        if encoding == _V_I8:
            return _unpack("q", self.blob(8 * n, what))
        if encoding != _V_JSON:
            raise self.bad(f"{what} have unknown encoding {encoding}")
        raw = self.blob(None, what)
        try:
            values = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise self.bad(f"{what} are not valid JSON ({exc})") from None
        if not isinstance(values, list) or len(values) != n:
            count = len(values) if isinstance(values, list) else type(values).__name__
            raise self.bad(f"{what}: {count} values where {n} points were declared")
        problem = _check_values(values, set(map(type, values)))
        if problem:
            raise self.bad(f"{what}: {problem}")
        return values
