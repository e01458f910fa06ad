"""The seam between the SDK and every place runs are kept.

The SDK talks only to :class:`Store` (records and metrics) and
:class:`~runyard.artifacts.base.ArtifactStore` (bytes). ``open_store`` in
:mod:`runyard.store` picks the implementation from the workspace URI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..records import (
    ArtifactRecord,
    ComputeRecord,
    ExperimentOverview,
    ExperimentRecord,
    MetricHistory,
    NewRun,
    RunEvent,
    RunQuery,
    RunRecord,
    SeriesAppend,
    SeriesSummary,
    StatusChange,
    SupervisedRun,
)

if TYPE_CHECKING:
    from ..artifacts.base import ArtifactStore


class Store(Protocol):
    """Everything the SDK may ask of a run history backend."""

    uri: str

    # experiments
    def get_or_create_experiment(self, name: str) -> ExperimentRecord: ...
    def get_experiment(self, experiment_id: str) -> ExperimentRecord: ...
    def find_experiment(self, name: str) -> ExperimentRecord | None: ...
    def list_experiments(self, view_type: str = "ActiveOnly") -> list[ExperimentRecord]: ...
    def archive_experiment(self, experiment_id: str) -> ExperimentRecord: ...
    def reactivate_experiment(self, experiment_id: str) -> ExperimentRecord: ...
    def set_experiment_tags(self, experiment_id: str, tags: dict[str, str | None]) -> None: ...
    def remove_experiment_tags(self, experiment_id: str, keys: Sequence[str]) -> None: ...

    # runs
    def create_runs(self, experiment_id: str, runs: Sequence[NewRun]) -> list[RunRecord]: ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def search_runs(
        self,
        query: RunQuery,
        *,
        after: tuple[float, int] | None = None,
        limit: int = 500,
        offset: int = 0,
    ) -> list[RunRecord]: ...
    def count_runs(self, query: RunQuery) -> int:
        """How many runs match ``query``, every page of it."""
        ...

    def experiment_overview(self, view_type: str = "ActiveOnly") -> list[ExperimentOverview]:
        """Experiments with their top-level runs counted by status, latest activity first."""
        ...

    def status_history(self, run_id: str) -> list[StatusChange]:
        """Every status the run took, oldest first."""
        ...

    def set_deleted(self, run_id: str, deleted: bool) -> RunRecord: ...
    def update_run(self, run_id: str, **fields: Any) -> RunRecord: ...
    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        only_from: Sequence[str] | None = None,
    ) -> RunRecord: ...
    def heartbeat(
        self, run_id: str, status: str | None = None, *, supervisor: str | None = None
    ) -> None: ...
    def supervised_runs(
        self, late_after: float, *, include: str | None = None
    ) -> list[SupervisedRun]: ...
    def expire_silent_runs(
        self, not_responding_after: float, fail_after: float, *, spare: Sequence[str] = ()
    ) -> int: ...
    def set_tags(self, run_id: str, tags: dict[str, str | None]) -> None: ...
    def remove_tags(self, run_id: str, keys: Sequence[str]) -> None: ...
    def add_properties(self, run_id: str, properties: dict[str, str]) -> None: ...
    def run_credentials(self, run_id: str) -> dict[str, str]:
        """Environment variables that a submitted run's processes need to reach this store
        (a server's token scoped to the run); nothing for a database."""
        ...

    # metrics
    def log_batch(
        self, run_id: str, series: Sequence[SeriesAppend], key: str | None = None
    ) -> bool:
        """Append points in one transaction; a batch whose idempotency ``key`` was stored
        before is skipped. Returns whether this call stored it."""
        ...

    def list_series(self, run_ids: Sequence[str]) -> list[SeriesSummary]: ...
    def list_series_now(self, run_ids: Sequence[str]) -> list[SeriesSummary]:
        """``list_series`` without waiting for a network (``run.log`` asks it): a server's
        store gives up at once with ServerUnreachable."""
        ...

    def persist(self) -> None:
        """Make durable what is accepted but not yet stored (a server's spooled batches);
        nothing to do for a database, whose writes are durable when they return."""
        ...

    def get_history(self, run_id: str, name: str, *, times: bool = True) -> MetricHistory:
        """Every point of one series; ``times=False`` may leave its times out (empty), as
        charts need only steps and values."""
        ...

    def get_histories(
        self, run_ids: Sequence[str], name: str | None = None, values_only: bool = False
    ) -> dict[str, list[MetricHistory]]:
        """Series of ``run_ids`` (only ``name`` if given; without steps and times if
        ``values_only``)."""
        ...

    # artifact and snapshot records (the bytes live in an ArtifactStore)
    def add_artifact(
        self, record: ArtifactRecord, place: Callable[[], None] | None = None
    ) -> None: ...
    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactRecord]: ...
    def get_artifact(self, run_id: str, path: str) -> ArtifactRecord: ...
    def add_snapshot(self, snapshot_id: str, size: int, files: int) -> None: ...
    def has_snapshot(self, snapshot_id: str) -> bool: ...

    # following a run (wait_for_completion, monitor-logs, the server's event stream)
    def run_events(
        self,
        run_id: str,
        artifacts: ArtifactStore,
        log_path: str | None = None,
        offset: int = 0,
    ) -> Iterator[RunEvent]:
        """Status changes of the run and its log's bytes from ``offset``, until it is
        finished; ``idle`` events come between looks (see ``runyard._events``)."""
        ...

    # compute targets attached to the workspace (see ``runyard.compute``)
    def attach_compute(
        self, name: str, type: str, address: str, created_by: str | None = None
    ) -> ComputeRecord: ...
    def get_compute(self, name: str) -> ComputeRecord: ...
    def list_computes(self) -> list[ComputeRecord]: ...
    def detach_compute(self, name: str) -> None: ...

    def close(self) -> None: ...


def iter_runs(
    store: Store,
    query: RunQuery,
    page: int = 500,
    max_page: int = 5000,
    after: tuple[float, int] | None = None,
) -> Iterable[RunRecord]:
    """All runs matching ``query``, newest first, fetched a page at a time.

    The first page is small, for callers that want only the newest runs; later pages grow
    to ``max_page``, because every page costs one query however few runs it returns.
    ``after`` (created time, number) starts below that run. With
    tag or property filters every page costs about the same whatever its size (the matches
    are found and sorted each time), so the first page is a large one too.
    """
    if query.tags or query.properties:
        page = max_page
    while True:
        batch = store.search_runs(query, after=after, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after = (batch[-1].created, batch[-1].number)
        page = max_page


def iter_ancestors(store: Store, parent_id: str | None, limit: int = 100) -> Iterator[str]:
    """The ids of a run's parent, grandparent…, nearest first (at most ``limit``)."""
    seen: set[str] = set()
    while parent_id is not None and parent_id not in seen and len(seen) < limit:
        yield parent_id
        seen.add(parent_id)
        parent_id = store.get_run(parent_id).parent_id
