"""The wire codec round-trips every metric value and refuses every malformed payload."""

from __future__ import annotations

import math
import random
import struct
import time
import zlib
from array import array

import pytest

from runyard.errors import TooLarge, UserError
from runyard.records import Column, MetricHistory, SeriesAppend
from runyard.store import wire

NAN = float("nan")
I64 = (-(2**63), 2**63 - 1)


def _same(a: object, b: object) -> bool:
    """Equal, NaN equal to NaN, and of the same type (1 is not 1.0 nor True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[attr-defined]
    return a == b


def _same_list(a: object, b: object) -> bool:
    a, b = list(a), list(b)  # type: ignore[call-overload]
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))


def _series(values, steps=None, name="m", kind="scalar", description=""):
    n = len(values)
    steps = list(range(n)) if steps is None else steps
    return SeriesAppend(name, kind, steps, values, [1.7e9 + i / 8 for i in range(n)], description)


def _round_trip(series: list[SeriesAppend]) -> list[SeriesAppend]:
    back = wire.decode_batch(wire.encode_batch(series))
    assert len(back) == len(series)
    for got, sent in zip(back, series, strict=True):
        assert (got.name, got.kind, got.description) == (sent.name, sent.kind, sent.description)
        # packed columns stay packed (range, array); as lists they are what was sent
        assert isinstance(got.steps, list | range | array)
        assert isinstance(got.values, list | array) and isinstance(got.times, array)
        assert _same_list(list(got.steps), sent.steps)
        assert _same_list(list(got.values), sent.values)
        assert list(got.times) == [float(t) for t in sent.times]
    return back


VALUE_CASES = {
    "floats": [0.5, -1.25, 0.0, -0.0, 1e308, 5e-324],
    "float specials": [NAN, math.inf, -math.inf, 1.0],
    "ints": [0, 1, -1, *I64],
    "ints beyond int64": [2**63, -(2**63) - 1, 2**100, 3],
    "bools": [True, False, True],
    "none": [None, None],
    "strings": ["", "plain", "ünïcødé ✓ 🚀", 'quote " and \\ and \n', "\x00nul", "\ud800"],
    "dict rows": [{"x": 1, "y": 0.5}, {"x": 2, "y": NAN, "label": "é", "ok": True, "z": None}],
    "mixed": [1, 2.5, NAN, True, None, "s", {"a": -math.inf}, 2**70, -0.0],
    "ints and floats": [1, 2.0],
    "one float": [math.inf],
}


@pytest.mark.parametrize("values", VALUE_CASES.values(), ids=VALUE_CASES.keys())
def test_values_round_trip_with_their_types(values):
    _round_trip([_series(values)])


@pytest.mark.parametrize(
    "steps",
    [
        [None, None, None],
        [None, 5, None],
        [3, None, 4],
        [0, 1, 2],
        [7, 8, 9, 10],
        [-3, -2, -1, 0, 1],
        [2, 1, 0],
        [0, 2, 4],
        [I64[0], 0, I64[1]],
        [I64[1] - 2, I64[1] - 1, I64[1]],
        [I64[0], I64[0] + 1, I64[0] + 2],
        [255, 256, 257],
        [65535, 65536, 65537],
        [2**32 - 1, 2**32, 2**32 + 1],
        [5],
        [None],
    ],
)
def test_steps_round_trip_with_none_kept(steps):
    _round_trip([_series([float(i) for i in range(len(steps))], steps=steps)])


@pytest.mark.parametrize("start", [0, 1, -1, 250, 65000, -70000, 2**40 - 5, I64[0], I64[1] - 999])
def test_consecutive_steps_travel_as_one_start(start):
    steps = list(range(start, start + 1000))
    data = wire.encode_batch([_series([1.0] * 1000, steps=steps)])
    plain = wire.encode_batch([_series([1.0] * 1000, steps=[*steps[:-1], start])])
    assert len(plain) - len(data) > 1000  # the packed steps are not there
    assert wire.decode_batch(data)[0].steps == range(start, start + 1000)


def test_many_series_names_kinds_descriptions():
    series = [
        _series([1.0, 2.0], name="loss", description="training loss ✓"),
        _series([{"x": 1}], name="tbl", kind="table"),
        _series(["a"], name="ünï/côde name", kind="list", steps=[None]),
        _series([], name="empty"),
    ]
    _round_trip(series)


def test_empty_batch():
    assert wire.decode_batch(wire.encode_batch([])) == []


def test_large_batches_round_trip_packed():
    n = 1_000_000
    rng = random.Random(1)
    values = [rng.random() for _ in range(n)]
    series = [SeriesAppend("loss", "scalar", list(range(n)), values, [1.7e9 + i for i in range(n)])]
    data = wire.encode_batch(series)
    (back,) = wire.decode_batch(data)
    assert back.steps == range(n)
    assert back.values == array("d", values) and back.times == array("d", series[0].times)
    assert len(data) < 16 * n + 200  # steps went as a range


def test_int_values_go_packed():
    n = 10_000
    data = wire.encode_batch([_series(list(range(n)))])
    assert len(data) < 8 * n * 2 + 300
    _round_trip([_series([I64[0]] * 3 + [I64[1]])])


def test_histories_round_trip_as_columns():
    n = 100_000
    histories = {
        "run-1": [
            MetricHistory(
                "loss",
                "scalar",
                Column(range(n)),
                Column(array("d", [i / 3 for i in range(n)])),
                Column(array("d", [1.7e9 + i for i in range(n)])),
            ),
            MetricHistory(
                "count",
                "scalar",
                Column(array("q", [5, 1, 9])),
                Column(array("q", [1, 2, 3])),
                Column(array("d", [1.0, 2.0, 3.0])),
            ),
            MetricHistory(
                "tbl",
                "table",
                Column([0, 1]),
                Column([{"x": 1}, {"x": NAN, "y": "é"}]),
                Column(array("d", [1.0, 2.0])),
            ),
            MetricHistory("empty", "scalar", Column(range(0)), Column([]), Column(array("d"))),
        ],
        "run-2": [MetricHistory("mixed", "list", [3, 4], [True, None], [1.5, 2.5])],
        "run-3": [],
    }
    back = wire.decode_histories(wire.encode_histories(histories))
    assert list(back) == list(histories)
    for run_id, items in histories.items():
        for got, sent in zip(back[run_id], items, strict=True):
            assert (got.name, got.kind) == (sent.name, sent.kind)
            assert isinstance(got.steps, Column) and isinstance(got.values, Column)
            assert got.steps == sent.steps and got.times == sent.times
            assert _same_list(got.values, sent.values)
    assert back["run-1"][0] == histories["run-1"][0]
    assert isinstance(back["run-1"][0].steps._data, range)  # type: ignore[attr-defined]
    assert isinstance(back["run-1"][0].values._data, array)  # type: ignore[attr-defined]


def test_values_only_histories():
    histories = {
        "r": [
            MetricHistory("loss", "scalar", [], [0.5, NAN], []),
            MetricHistory("n", "scalar", [], [1, 2, 3], []),
            MetricHistory("s", "list", [], ["a", None, True], []),
        ]
    }
    back = wire.decode_histories(wire.encode_histories(histories))
    for got, sent in zip(back["r"], histories["r"], strict=True):
        assert got.steps == [] and got.times == []
        assert _same_list(got.values, sent.values)


def test_a_million_point_history_decodes_fast():
    n = 1_000_000
    history = MetricHistory(
        "loss",
        "scalar",
        Column(range(n)),
        Column(array("d", range(n))),
        Column(array("d", range(n))),
    )
    data = wire.encode_histories({"r": [history]})
    started = time.perf_counter()
    back = wire.decode_histories(data)
    assert time.perf_counter() - started < 0.5  # a few ms here
    assert back["r"][0] == history


@pytest.mark.parametrize(
    ("series", "message"),
    [
        (SeriesAppend("m", "scalar", [1], [1.0, 2.0], [1.0, 2.0]), "every point"),
        (_series([{1: 2}]), "table row"),
        (_series([{"a": [1]}]), "table row"),
        (_series([[1, 2]]), "list"),
        (_series([(1, 2)]), "tuple"),
        (_series([1.0], steps=[1.5]), "step"),
        (_series([1.0, 2.0], steps=[None, 1.5]), "step"),
        (_series([1.0], steps=[2**63]), "step"),
        (SeriesAppend("m", "scalar", [1], [1.0], ["x"]), "time"),  # type: ignore[list-item]
        (_series([10**5000]), "cannot be sent"),
    ],
)
def test_unsendable_batches_raise_user_error(series, message):
    with pytest.raises(UserError, match=message):
        wire.encode_batch([series])


def _valid_payload() -> bytes:
    return wire.encode_batch(
        [
            _series([0.5, NAN, -math.inf], steps=[0, None, 2], description="d"),
            _series(list(range(40)), name="ints"),
            _series(["é", {"x": 1}, None, True, 2**70], name="json", kind="table"),
            _series([1.0, 2.0], steps=[None, None], name="nones"),
        ]
    )


def _decode_fails_cleanly(data: bytes) -> None:
    try:
        wire.decode_batch(data, max_points=1000, max_bytes=100_000)
    except UserError:
        pass


def test_every_truncation_is_refused():
    data = _valid_payload()
    for cut in range(len(data)):
        with pytest.raises(UserError, match="malformed metric batch"):
            wire.decode_batch(data[:cut])


def test_trailing_garbage_is_refused():
    with pytest.raises(UserError, match="trailing garbage"):
        wire.decode_batch(_valid_payload() + b"\x00")


def test_fuzz_flipped_bytes_and_random_bytes_raise_only_user_error():
    rng = random.Random(20240607)
    data = _valid_payload()
    for position in range(len(data)):  # every byte, set to a few other values
        for value in (0, 1, 0x7F, 0xFF, data[position] ^ 0x55):
            mutated = bytearray(data)
            mutated[position] = value
            _decode_fails_cleanly(bytes(mutated))
    for _ in range(3000):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        _decode_fails_cleanly(bytes(mutated))
        _decode_fails_cleanly(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))
        _decode_fails_cleanly(data[:5] + bytes(rng.randrange(256) for _ in range(40)))
    histories = wire.encode_histories(
        {"r": [MetricHistory("m", "s", Column(range(3)), Column([1, "a", None]), [1.0, 2, 3])]}
    )
    for cut in range(len(histories)):
        with pytest.raises(UserError, match="malformed metric histories"):
            wire.decode_histories(histories[:cut])
    for position in range(len(histories)):
        mutated = bytearray(histories)
        mutated[position] ^= 0xA5
        try:
            wire.decode_histories(bytes(mutated))
        except UserError:
            pass


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "does not start"),
        (b"RYH1\x01\x00\x00\x00\x00", "does not start"),
        (b"RYB1\x02\x00\x00\x00\x00", "version 2"),
        ("RYB1", "expected bytes"),
    ],
)
def test_malformed_headers(data, message):
    with pytest.raises(UserError, match=message):
        wire.decode_batch(data)


def test_invalid_names_are_refused_with_the_sdk_rules():
    for name in ["", "a\nb", "x" * 256]:
        data = wire.encode_batch([_series([1.0], name=name)])
        with pytest.raises(UserError, match="malformed metric batch: metric name"):
            wire.decode_batch(data)
    data = wire.encode_batch([_series([1.0], description="x" * 5001)])
    with pytest.raises(UserError, match="malformed metric batch: description"):
        wire.decode_batch(data)
    bad_utf8 = wire.encode_batch([_series([1.0], name="ab")]).replace(b"ab", b"\xff\xfe")
    with pytest.raises(UserError, match="not valid UTF-8"):
        wire.decode_batch(bad_utf8)


def test_max_points_raises_too_large():
    data = wire.encode_batch([_series([1.0] * 60), _series([2.0] * 60, name="b")])
    assert len(wire.decode_batch(data, max_points=120)) == 2
    with pytest.raises(TooLarge, match="more than 100 points"):
        wire.decode_batch(data, max_points=100)


def test_max_bytes_raises_too_large():
    data = wire.encode_batch([_series(["x" * 1000] * 100)])
    assert wire.decode_batch(data, max_bytes=200_000)[0].values[0] == "x" * 1000
    with pytest.raises(TooLarge, match="more than 50000 bytes"):
        wire.decode_batch(data, max_bytes=50_000)


def _bomb(declared: int, actual: int) -> bytes:
    """A batch of one JSON-valued series whose blob inflates to ``actual`` bytes."""
    header = wire.encode_batch([_series(["a"], steps=[None])])
    cut = header.rindex(b"\x02") + 1  # the JSON value encoding byte of the last column
    body = zlib.compress(b" " * actual, 9)
    return header[:cut] + struct.pack("<BQQ", 1, declared, len(body)) + body


def test_zip_bomb_is_refused_before_inflating():
    honest = _bomb(200_000_000, 200_000_000)  # 200 MB of spaces in ~200 kB
    assert len(honest) < 300_000
    with pytest.raises(TooLarge):
        wire.decode_batch(honest, max_bytes=10_000_000)
    liar = _bomb(1000, 200_000_000)  # declares little, inflates to much: stopped at 1001 bytes
    with pytest.raises(UserError, match="decompresses to other than"):
        wire.decode_batch(liar)
    default = _bomb(2**62, 10)
    with pytest.raises(TooLarge):
        wire.decode_batch(default)
