"""Min/max downsampling of a long numeric series, for charts.

A chart ``width`` pixels wide shows at most two points per pixel column: the lowest and
the highest value among the points that fall in it, each at its own step, in step order.
A spike of one point in a million stays on the chart at every zoom; between the extremes
nothing is drawn that a pixel could show.

    >>> sample([0, 1, 2, 3], [1.0, 9.0, 2.0, 0.0], width=1)
    ([1, 3], [9.0, 0.0], 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_WIDTH = 10_000


def sample(
    steps: Sequence[int],
    values: Sequence[Any],
    width: int,
    start: float | None = None,
    end: float | None = None,
) -> tuple[list[int], list[float], int]:
    """``(steps, values, count)``: the series' points with ``start <= step <= end``, at
    most two per column of ``width``; ``count`` is how many points the range holds.
    Values that are not finite numbers (NaN, infinities, None) are left out."""
    import numpy as np

    if isinstance(steps, range):
        x = np.arange(steps.start, steps.stop, steps.step, dtype=np.int64)
    else:
        x = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if x.size and np.any(x[1:] < x[:-1]):  # steps logged out of order: sort them once
        order = np.argsort(x, kind="stable")
        x, v = x[order], v[order]
    low = 0 if start is None else int(np.searchsorted(x, start, side="left"))
    high = x.size if end is None else int(np.searchsorted(x, end, side="right"))
    x, v = x[low:high], v[low:high]
    count = int(x.size)
    finite = np.isfinite(v)
    if not finite.all():
        x, v = x[finite], v[finite]
    if x.size <= 2 * width:
        return x.tolist(), v.tolist(), count
    consecutive = int(x[-1]) - int(x[0]) == x.size - 1  # the usual case
    chosen = _blocks(v, width) if consecutive else _columns(x, v, width)
    return x[chosen].tolist(), v[chosen].tolist(), count


def _blocks(v: Any, width: int) -> Any:
    """Indexes of the lowest and highest value of each of ``width`` equal runs of ``v``
    (consecutive steps: each column of the chart holds as many points)."""
    import numpy as np

    per = -(-v.size // width)
    full = v.size // per * per
    blocks = v[:full].reshape(-1, per)
    starts = np.arange(0, full, per)
    lows, highs = blocks.argmin(axis=1) + starts, blocks.argmax(axis=1) + starts
    if full < v.size:
        rest = v[full:]
        lows = np.append(lows, full + int(rest.argmin()))
        highs = np.append(highs, full + int(rest.argmax()))
    return _in_order(lows, highs)


def _columns(x: Any, v: Any, width: int) -> Any:
    """Indexes of the lowest and highest value in each pixel column of sorted steps ``x``."""
    import numpy as np

    first, last = int(x[0]), int(x[-1])
    columns = ((x - first) * (width / max(last - first, 1))).astype(np.int64)
    np.minimum(columns, width - 1, out=columns)
    # x is sorted, so each column's points are one run of the arrays
    starts = np.flatnonzero(np.r_[True, columns[1:] != columns[:-1]])
    lows = np.minimum.reduceat(v, starts)
    highs = np.maximum.reduceat(v, starts)
    sizes = np.diff(np.r_[starts, v.size])
    column_of = np.repeat(np.arange(starts.size), sizes)
    at_low = _first_where(v == np.repeat(lows, sizes), column_of, starts.size)
    at_high = _first_where(v == np.repeat(highs, sizes), column_of, starts.size)
    return _in_order(at_low, at_high)


def _in_order(lows: Any, highs: Any) -> Any:
    """Each column's two indexes in step order, one where they are the same point."""
    import numpy as np

    pairs = np.sort(np.stack([lows, highs], axis=1), axis=1).ravel()
    return pairs[np.r_[True, pairs[1:] != pairs[:-1]]]


def _first_where(hit: Any, column_of: Any, columns: int) -> Any:
    """The index of the first True of ``hit`` in each column (every column has one)."""
    import numpy as np

    where = np.flatnonzero(hit)
    found = np.full(columns, -1, dtype=np.int64)
    found[column_of[where][::-1]] = where[::-1]  # the last write of each column wins
    return found
