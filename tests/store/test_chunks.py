"""The columnar encoding of metric points round-trips every value it accepts."""

from __future__ import annotations

import math

import pytest

from runyard.store.sql import chunks


@pytest.mark.parametrize(
    "steps",
    [[], [7], [1, 2], [1, 2, 3, 4], [3, 1, 2], [0, 2, 4], range(5, 10), [-(2**63), 2**63 - 1]],
)
def test_steps_round_trip(steps):
    assert chunks.decode_steps(chunks.encode_steps(steps)) == list(steps)


def test_consecutive_steps_are_stored_as_a_range():
    assert len(chunks.encode_steps(list(range(100_000)))) == 17
    assert len(chunks.encode_steps([1, 2])) == 16  # short runs stay plain arrays


@pytest.mark.parametrize(
    ("values", "encoding"),
    [
        ([0.5, -1.25, math.inf], "f8"),
        ([1, 2, -(2**63)], "i8"),
        ([1, 2.5], "json"),
        ([True, False], "json"),
        (["a", None], "json"),
        ([2**64], "json"),
        ([{"x": 1}], "json"),
    ],
)
def test_values_round_trip_with_their_types(values, encoding):
    kind, data = chunks.encode_values(values)
    assert kind == encoding
    back = chunks.decode_values(kind, data)
    assert back == values
    assert [type(v) for v in back] == [type(v) for v in values]


def test_nan_survives_both_encodings():
    for values in ([math.nan, 1.0], [math.nan, "x"]):
        back = chunks.decode_values(*chunks.encode_values(values))
        assert math.isnan(back[0]) and back[1] == values[1]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([math.nan, 3.0, 1.0, math.nan, 2.0], (1.0, 3.0)),
        ([math.nan, math.nan], (None, None)),
        ([1, 5, -2], (-2.0, 5.0)),
        (["a", 4, True, 2.5, None], (2.5, 4.0)),
        ([-math.inf, math.inf], (-math.inf, math.inf)),
        ([10**400], (None, None)),
    ],
)
def test_numeric_range_skips_nan_and_non_numbers(values, expected):
    assert chunks.numeric_range(values) == expected


def test_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match="unknown metric chunk encoding"):
        chunks.decode_values("f4", b"")
