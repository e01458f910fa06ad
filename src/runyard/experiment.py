"""Experiment: a named group of runs in a workspace."""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _liveness
from ._validation import (
    check_experiment_name,
    check_key_and_value,
    check_name,
    check_status,
    check_text,
)
from .errors import NotFound, UserError
from .records import ExperimentRecord, RunQuery
from .store.base import iter_runs

if TYPE_CHECKING:
    from .run import Run
    from .workspace import Workspace

VIEW_TYPES = ("ActiveOnly", "All", "ArchivedOnly")


class Experiment:
    """Get or create the experiment ``name`` in ``workspace``.

    >>> exp = Experiment(ws, "ridge-sweep")              # doctest: +SKIP
    >>> with exp.start_logging() as run:                 # doctest: +SKIP
    ...     run.log("alpha", 0.1)

    ``_create_in_cloud=False`` only looks the experiment up: one that does not exist is a
    NotFound naming the experiments there are, and nothing is written.
    """

    def __init__(self, workspace: Workspace, name: str, _create_in_cloud: bool = True) -> None:
        check_experiment_name(name)
        self.workspace = workspace
        if _create_in_cloud:
            self._record = workspace._store.get_or_create_experiment(name)
            return
        found = workspace._store.find_experiment(name)
        if found is None:
            raise missing_experiment(workspace, name)
        self._record = found

    @classmethod
    def _from_record(cls, workspace: Workspace, record: ExperimentRecord) -> Experiment:
        self = cls.__new__(cls)
        self.workspace = workspace
        self._record = record
        return self

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def archived_time(self) -> str | None:
        from .run import format_time

        return format_time(self._record.archived)

    @property
    def tags(self) -> dict[str, str | None]:
        """Tags as of the last fetch; ``refresh()`` fetches them again."""
        return dict(self._record.tags)

    def __repr__(self) -> str:
        return f"Experiment(Name: {self.name},\nWorkspace: {self.workspace.name})"

    def _repr_html_(self) -> str:
        from .notebook import experiment_html

        return experiment_html(self)

    def get_portal_url(self) -> str:
        """The URL of this experiment's runs in the studio."""
        from urllib.parse import quote

        return f"{self.workspace._studio_url()}/experiments/{quote(self.id, safe='')}"

    def to_dict(self) -> dict[str, Any]:
        """The experiment with the camelCase keys of ``az ml experiment list``."""
        from .run import format_time

        return {
            "experimentId": self.id,
            "name": self.name,
            "createdUtc": format_time(self._record.created),
            "archivedTime": self.archived_time,
            "tags": self.tags,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def refresh(self) -> None:
        self._record = self.workspace._store.get_experiment(self.id)

    # -- runs -----------------------------------------------------------------
    def start_logging(
        self,
        *args: Any,
        snapshot_directory: str | os.PathLike[str] | None = ".",
        outputs: str | os.PathLike[str] | bool | None = "./outputs",
        display_name: str | None = None,
        description: str | None = None,
        tags: dict[str, Any] | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ) -> Run:
        """Start an interactive run: status Running, snapshot of ``snapshot_directory``.

        ``outputs`` is a folder collected as ``outputs/...`` when the run completes
        (created now; ``False`` or ``None`` for none).
        """
        from .run import Run

        if args or kwargs:
            unknown = list(kwargs) or ["positional arguments"]
            raise UserError(
                f"start_logging() got unexpected {', '.join(map(str, unknown))}; it takes "
                "snapshot_directory, outputs, display_name, description, tags, run_id"
            )
        return Run._start(
            self,
            parent=None,
            run_id=run_id,
            outputs=outputs,
            snapshot_directory=snapshot_directory,
            display_name=display_name,
            description=description,
            tags=tags,
        )

    def submit(self, config: Any, tags: dict[str, Any] | None = None, **kwargs: Any) -> Run:
        """Submit a ScriptRunConfig; returns the run at once while a supervisor runs it.

        >>> run = exp.submit(ScriptRunConfig(".", "train.py"), tags={"try": "1"})  # doctest: +SKIP
        """
        from .execution.submit import submit

        unknown = set(kwargs) - {"run_id", "_parent_run_id"}
        if unknown:
            raise UserError(f"submit() got unexpected arguments {sorted(unknown)}")
        return submit(
            self, config, tags, parent_run_id=kwargs.get("_parent_run_id"),
            run_id=kwargs.get("run_id"),
        )  # fmt: skip

    def get_runs(
        self,
        type: str | None = None,
        tags: str | dict[str, Any] | None = None,
        properties: str | dict[str, Any] | None = None,
        include_children: bool = False,
        status: str | None = None,
        *,
        filter: str | None = None,
    ) -> Iterator[Run]:
        """Runs of this experiment, newest first, fetched lazily page by page.

        ``tags="k"`` keeps runs that have the tag ``k``; ``tags={"k": "v"}`` keeps runs
        whose tags match every pair. ``properties`` works the same way. ``filter`` (a
        runyard extension) takes the studio's filter text, metrics included:
        ``get_runs(filter="tags.team = vision and metrics.acc > 0.9")``.
        """
        from .run import Run
        from .run_filter import parse_run_filter

        query = RunQuery(
            experiment_id=self.id,
            top_level_only=not include_children,
            type=type,
            status=check_status(status),
            tags=filter_dict(tags, "tags"),
            properties=filter_dict(properties, "properties"),
            conditions=parse_run_filter(filter),
        )
        _liveness.expire_silent_runs(self.workspace._store, self.workspace._artifacts)
        for record in iter_runs(self.workspace._store, query):
            yield Run._from_record(self, record)

    # -- listing and archiving -------------------------------------------------
    @staticmethod
    def list(
        workspace: Workspace,
        experiment_name: str | None = None,
        view_type: str = "ActiveOnly",
        tags: str | dict[str, Any] | None = None,
    ) -> list[Experiment]:
        """Experiments of ``workspace``; ``view_type`` is ActiveOnly, All or ArchivedOnly."""
        if view_type not in VIEW_TYPES:
            raise UserError(f"view_type must be one of {', '.join(VIEW_TYPES)}, not {view_type!r}")
        wanted = filter_dict(tags, "tags")
        found = []
        for record in workspace._store.list_experiments(view_type):
            if experiment_name is not None and record.name != experiment_name:
                continue
            if any(
                k not in record.tags or (v is not None and record.tags[k] != v)
                for k, v in wanted.items()
            ):
                continue
            found.append(Experiment._from_record(workspace, record))
        return found

    def archive(self) -> None:
        """Hide this experiment from default listings; its name becomes free again."""
        self._record = self.workspace._store.archive_experiment(self.id)

    def reactivate(self, new_name: str | None = None) -> None:
        """Undo ``archive()``; fails if an active experiment has taken the name."""
        if new_name is not None:
            raise UserError("Cannot rename an experiment while reactivating it; omit new_name")
        self._record = self.workspace._store.reactivate_experiment(self.id)

    # -- tags ---------------------------------------------------------------------
    def tag(self, key: str, value: Any = None) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        clean = clean_tags(tags)
        self.workspace._store.set_experiment_tags(self.id, clean)
        self.refresh()

    def remove_tags(self, tags: builtins.list[str]) -> None:
        self.workspace._store.remove_experiment_tags(self.id, list(tags))
        self.refresh()


def missing_experiment(workspace: Workspace, name: str, shown: int = 20) -> NotFound:
    """The NotFound for an experiment name that no active experiment has: what there is."""
    from .store import _without_password

    where = _without_password(workspace.uri)
    active = sorted(rec.name for rec in workspace._store.list_experiments("ActiveOnly"))
    if not active:
        there = f"workspace {where} has no experiments yet"
    else:
        listed = ", ".join(active[:shown])
        more = f" and {len(active) - shown} more" if len(active) > shown else ""
        there = f"the experiments of workspace {where} are: {listed}{more}"
    archived = any(rec.name == name for rec in workspace._store.list_experiments("ArchivedOnly"))
    hint = (
        f"; an archived experiment has that name (runyard experiment reactivate -e {name})"
        if archived
        else ""
    )
    return NotFound(f"no experiment named {name!r}: {there}{hint}")


def filter_dict(value: str | dict[str, Any] | None, what: str) -> dict[str, str | None]:
    """Turn a ``tags=``/``properties=`` filter into {key: value-or-None (= key exists)}."""
    if value is None:
        return {}
    if isinstance(value, str):
        return {value: None}
    if isinstance(value, dict):
        return {
            check_name(k, f"{what} key"): None if v is None else str(v) for k, v in value.items()
        }
    raise UserError(f"{what} filter must be a key (str) or a dict of key: value pairs")


def clean_tags(tags: dict[str, Any]) -> dict[str, str | None]:
    if not isinstance(tags, dict):
        raise UserError(
            f"tags must be a dict such as {{'quality': 'good'}}, not {type(tags).__name__}"
        )
    clean: dict[str, str | None] = {}
    for key, value in tags.items():
        check_name(key, "tag key")
        if value is not None:
            value = value if isinstance(value, str) else str(value)
            check_text(value, f"tag {key!r}")
        check_key_and_value(key, value, "tag")
        clean[key] = value
    return clean
