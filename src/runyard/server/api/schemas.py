"""The JSON shapes of /api/v1: request bodies (unknown fields refused) and responses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Tags = dict[str, str | None]
# what take_snapshot names a snapshot: never a path (the server opens snapshots by id)
SnapshotId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class Strict(BaseModel):
    """A request body: a field the API does not know is a 400, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Experiment(BaseModel):
    id: str
    name: str
    created: float
    archived: float | None = None
    tags: Tags = {}


class ExperimentIn(Strict):
    name: str


class TagChanges(Strict):
    """Tags to set (a key may have no value: null) and tag keys to remove."""

    set: Tags = {}
    remove: list[str] = []


class NewRunIn(Strict):
    id: str
    parent_id: str | None = None
    display_name: str | None = None
    description: str | None = None
    type: str | None = None
    target: str = "local"
    status: str = "Running"
    tags: Tags = {}
    properties: dict[str, str] = {}
    run_definition: dict[str, Any] | None = None
    name: str | None = None
    snapshot_id: SnapshotId | None = None
    heartbeat: bool = False


class NewRunsIn(Strict):
    runs: list[NewRunIn] = Field(max_length=10_000)


class Run(BaseModel):
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
    tags: Tags
    properties: dict[str, str]
    deleted: float | None = None


class ConditionIn(Strict):
    """A comparison (see runyard.records.Condition); ``value`` a number, a text or, for IN
    and NOT IN, a list of them; none for IS NULL and IS NOT NULL."""

    field: Literal["metric", "tag", "property", "attribute"]
    key: str
    op: Literal[
        "=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN", "IS NULL", "IS NOT NULL"
    ]
    value: float | str | list[float | str] | dict[str, str] | None = None  # dict: tagged float


class OrderIn(Strict):
    field: Literal["metric", "tag", "property", "attribute"]
    key: str
    descending: bool = False


class RunQueryIn(Strict):
    experiment_id: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    top_level_only: bool = False
    type: str | None = None
    status: str | None = None
    tags: Tags = {}
    properties: dict[str, str | None] = {}
    conditions: list[ConditionIn] = Field(default_factory=list, max_length=1000)
    order: list[OrderIn] = Field(default_factory=list, max_length=100)
    lifecycle: Literal["active", "deleted", "all"] = "active"


class SearchIn(Strict):
    query: RunQueryIn = RunQueryIn()
    filter: str | None = Field(None, description="runyard's run filter (runyard.run_filter)")
    after: tuple[float, Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]] | None = None
    limit: int = Field(500, ge=1, le=50_000)
    offset: int = Field(0, ge=0, le=2**62)


class RunUpdate(Strict):
    """Fields of a run that may change; only the fields given are changed."""

    display_name: str | None = None
    description: str | None = None
    snapshot_id: SnapshotId | None = None
    run_definition: dict[str, Any] | None = None
    type: str | None = None
    error: dict[str, Any] | None = None


class StatusIn(Strict):
    status: str
    error: dict[str, Any] | None = None
    only_from: list[str] | None = None


class HeartbeatIn(Strict):
    status: str | None = None
    supervisor: str | None = None


class SupervisedRun(BaseModel):
    id: str
    status: str
    supervisor: str | None
    silent_for: float


class ExpireIn(Strict):
    not_responding_after: float = Field(gt=0)
    fail_after: float = Field(gt=0)
    spare: list[str] = []


class Expired(BaseModel):
    expired: int


class PropertiesIn(Strict):
    properties: dict[str, str]


class RunIdsIn(Strict):
    run_ids: list[str] = Field(max_length=50_000)


class HistoriesIn(RunIdsIn):
    name: str | None = None
    values_only: bool = False


class SeriesSummary(BaseModel):
    run_id: str
    name: str
    kind: str
    description: str
    count: int
    last: Any
    min: float | None
    max: float | None
    last_step: int | None
    last_time: float | None = None


class Stored(BaseModel):
    stored: bool


class Artifact(BaseModel):
    run_id: str
    path: str
    size: int
    digest: str
    created: float
    streaming: bool = False


class Snapshot(BaseModel):
    id: str
    exists: bool


def plain(record: Any) -> dict[str, Any]:
    """A record (frozen dataclass) as a JSON-ready dict, without a deep copy."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


class SearchCountIn(Strict):
    query: RunQueryIn = RunQueryIn()
    filter: str | None = Field(None, description="runyard's run filter (runyard.run_filter)")


class Count(BaseModel):
    count: int


class ExperimentOverview(BaseModel):
    experiment: Experiment
    runs: int
    statuses: dict[str, int]
    last_activity: float | None


class StatusChange(BaseModel):
    status: str
    time: float


class SampledSeries(BaseModel):
    name: str
    kind: str
    count: int  # points in the range asked for
    total: int  # points in the series
    sampled: bool  # fewer points than the range holds
    steps: list[int]
    values: list[float]


class SeriesPoints(BaseModel):
    name: str
    kind: str
    total: int
    offset: int
    steps: list[int]
    values: list[Any]
    times: list[float]
