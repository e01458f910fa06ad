"""Frozen records that cross every boundary between the SDK and a store."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

RUNNING_STATUSES = (
    "NotStarted",
    "Queued",
    "Preparing",
    "Starting",
    "Provisioning",
    "Running",
    "NotResponding",
)
POST_PROCESSING_STATUSES = ("Finalizing", "CancelRequested")
TERMINAL_STATUSES = ("Completed", "Failed", "Canceled")
ALL_STATUSES = RUNNING_STATUSES + POST_PROCESSING_STATUSES + TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    id: str
    name: str
    created: float
    archived: float | None = None
    tags: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExperimentOverview:
    """An experiment at a glance: its top-level runs (deleted ones left out), how many
    have each status, and when the latest of them last showed a sign of life."""

    experiment: ExperimentRecord
    runs: int
    statuses: dict[str, int]
    last_activity: float | None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One status a run took, and when."""

    status: str
    time: float


@dataclass(frozen=True, slots=True)
class NewRun:
    """What a store needs to create one run."""

    id: str
    parent_id: str | None = None
    display_name: str | None = None
    description: str | None = None
    type: str | None = None
    target: str = "local"
    status: str = "Running"
    tags: dict[str, str | None] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    run_definition: dict[str, Any] | None = None
    submitted_by: str | None = None
    name: str | None = None
    snapshot_id: str | None = None
    heartbeat: bool = False  # supervised runs: readers watch for the heartbeat to stop


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    experiment_id: str
    experiment_name: str
    parent_id: str | None
    root_id: str
    number: int
    name: str | None
    display_name: str | None
    description: str | None
    type: str | None
    target: str
    status: str
    created: float
    start: float | None
    end: float | None
    heartbeat: float | None
    error: dict[str, Any] | None
    run_definition: dict[str, Any] | None
    snapshot_id: str | None
    submitted_by: str | None
    tags: dict[str, str | None]
    properties: dict[str, str]
    deleted: float | None = None  # when it was deleted (MLflow's soft delete); None: it is not


@dataclass(frozen=True, slots=True)
class SupervisedRun:
    """A supervised run that is not finished, as a liveness check sees it."""

    id: str
    status: str
    supervisor: str | None  # the supervisor's process name (``_owners``), once known
    silent_for: float  # seconds since its last heartbeat, by the database's clock


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters of ``get_runs`` / ``get_children``; ``None`` means "any"."""

    experiment_id: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    top_level_only: bool = False
    type: str | None = None
    status: str | None = None
    tags: dict[str, str | None] = field(default_factory=dict)
    properties: dict[str, str | None] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()
    order: tuple[Order, ...] = ()  # empty: newest first
    lifecycle: str = "active"  # "active", "deleted" (soft-deleted runs only) or "all"


CONDITION_FIELDS = ("metric", "tag", "property", "attribute")
CONDITION_OPS = (
    "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL",
)  # fmt: skip
# run attributes a condition or an order may name, as RunRecord calls them
RUN_ATTRIBUTES = (
    "id", "name", "display_name", "description", "type", "target", "status", "submitted_by",
    "number", "created", "start", "end", "experiment_id", "parent_id",
)  # fmt: skip
NUMERIC_ATTRIBUTES = ("number", "created", "start", "end")


@dataclass(frozen=True, slots=True)
class Condition:
    """One comparison of a run search.

    ``field`` is "metric" (the series' last value, from its summary), "tag", "property" or
    "attribute" (one of ``RUN_ATTRIBUTES``); ``op`` one of ``CONDITION_OPS``. A run without
    the metric, tag or property never matches, not even ``!=``. ``LIKE`` is case-sensitive,
    ``ILIKE`` is not; ``IN`` and ``NOT IN`` take a tuple of values; ``IS NULL`` (the run
    has no such metric, tag or property) and ``IS NOT NULL`` take None.
    """

    field: str
    key: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Order:
    """Sort runs by a metric's last value, a tag, a property or an attribute (or the
    attribute "duration": from start to end, or to now); runs without it come last,
    either way."""

    field: str
    key: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class SeriesAppend:
    """Points appended to one metric series; ``values`` are JSON-compatible scalars or dicts.

    The columns are lists, or packed (a ``range`` of steps, ``array`` of numbers) when they
    come from a binary batch.
    """

    name: str
    kind: str
    steps: Sequence[int | None]
    values: Sequence[Any]
    times: Sequence[float]
    description: str = ""


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    run_id: str
    name: str
    kind: str
    description: str
    count: int
    last: Any
    min: float | None
    max: float | None
    last_step: int | None
    last_time: float | None = None  # when the last point was logged (None: before v7)


class Column(Sequence[Any]):
    """One column of a metric series (steps, values or times), read-only and list-like.

    It indexes, slices, iterates and compares with ``==`` like a list, without making a
    Python object per point until one is asked for: a million-point series reads in the
    time its bytes take to arrive. ``list(column)`` or ``column.tolist()`` gives a list;
    ``numpy.asarray(column)`` is one fast copy when the values are packed numbers
    (``numpy.asarray(column, copy=False)`` shares them, read-only).

        >>> Column(range(3)) == [0, 1, 2]
        True
    """

    __slots__ = ("_data",)

    def __init__(self, data: Sequence[Any]) -> None:
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Column: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return Column(self._data[index])
        return self._data[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Column):
            other = other._data
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = self.tolist() if len(self) <= 10 else [*self[:5], "...", *self[-3:]]
        return f"Column({shown!r}, len={len(self)})"

    def tolist(self) -> list[Any]:
        data = self._data
        return data.tolist() if isinstance(data, array) else list(data)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        """A numpy array of its own, as from a list (one fast copy of packed values);
        ``copy=False`` shares the packed values instead, read-only: a Column never changes."""
        import numpy

        data = self._data
        if isinstance(data, array):
            kind = {"d": numpy.float64, "q": numpy.int64}[data.typecode]
            result = numpy.frombuffer(memoryview(data).toreadonly(), dtype=kind)
            if copy is not False:
                result = result.copy()
        elif isinstance(data, range):
            result = numpy.arange(data.start, data.stop, data.step, dtype=numpy.int64)
        else:
            result = numpy.asarray(list(data))
        return result if dtype is None else result.astype(dtype)


@dataclass(frozen=True, slots=True)
class MetricHistory:
    """Every point of one series, oldest first: ``steps``, ``values``, ``times``."""

    name: str
    kind: str
    steps: Sequence[int]
    values: Sequence[Any]
    times: Sequence[float]


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    run_id: str
    path: str
    size: int
    digest: str
    created: float
    streaming: bool = False


@dataclass(frozen=True, slots=True)
class RunEvent:
    """What following a run reports: ``status`` (with the run as it now is), ``log``
    (``data``, the bytes of its log from ``offset`` on), or ``idle`` (nothing new: the
    follower may wait before asking again)."""

    kind: str
    run: RunRecord | None = None
    data: bytes = b""
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ComputeRecord:
    """A compute target attached to the workspace: where script runs can be sent.

    ``type`` is ``"ray"`` (a Ray cluster, reached at ``address``: its Jobs API).
    """

    name: str
    type: str
    address: str
    created: float
    created_by: str | None
