"""``runyard experiment …``: list, show, archive and reactivate experiments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ._common import Session, command, path_option
from ._output import local_time

if TYPE_CHECKING:
    from ..experiment import Experiment


@click.group("experiment", epilog="Example: runyard experiment list -o table")
def group() -> None:
    """List and manage experiments."""


def name_option(func: Any) -> Any:
    return click.option(
        "-e", "--experiment-name", "name", metavar="NAME",
        help="Experiment (default: the one in .runyard/config.json).",
    )(func)  # fmt: skip


def experiment_rows(result: Any) -> list[dict[str, Any]]:
    items = result if isinstance(result, list) else [result]
    return [
        {
            "Name": e.get("name", ""),
            "Created": local_time(e.get("createdUtc")),
            "Archived": local_time(e.get("archivedTime")),
            "Tags": ", ".join(
                f"{k}={v}" if v is not None else k for k, v in e.get("tags", {}).items()
            ),
        }
        for e in items
    ]


def _find(session: Session, name: str | None, view_type: str = "All") -> Experiment:
    """The named experiment, or the one of the config."""
    from ..experiment import Experiment

    workspace = session.workspace()
    name = name or workspace.default_experiment
    if not name:
        raise click.UsageError("no experiment given: pass -e NAME")
    found = Experiment.list(workspace, experiment_name=name, view_type=view_type)
    if not found:
        from ..errors import NotFound
        from ..experiment import missing_experiment

        if view_type == "ArchivedOnly":
            raise NotFound(f"no archived experiment named {name!r}; see runyard experiment "
                           "list --view-type ArchivedOnly")  # fmt: skip
        raise missing_experiment(workspace, name)
    return found[-1]


@command(group, "list", "runyard experiment list --view-type All -o table", table=experiment_rows)
@click.option(
    "--view-type",
    type=click.Choice(["ActiveOnly", "ArchivedOnly", "All"]),
    default="ActiveOnly",
    show_default=True,
    help="Which experiments.",
)
@path_option
def list_experiments(session: Session, view_type: str) -> list[dict[str, Any]]:
    """List experiments."""
    from ..experiment import Experiment

    return [e.to_dict() for e in Experiment.list(session.workspace(), view_type=view_type)]


@command(group, "show", "runyard experiment show -e ridge", table=experiment_rows)
@name_option
@path_option
def show(session: Session, name: str | None) -> dict[str, Any]:
    """Show one experiment."""
    return _find(session, name).to_dict()


@command(group, "archive", "runyard experiment archive -e old-sweep", table=experiment_rows)
@name_option
@path_option
def archive(session: Session, name: str | None) -> dict[str, Any]:
    """Archive an experiment: hidden from lists, its name free for a new one."""
    experiment = _find(session, name, "ActiveOnly")
    experiment.archive()
    return experiment.to_dict()


@command(group, "reactivate", "runyard experiment reactivate -e old-sweep", table=experiment_rows)
@name_option
@path_option
def reactivate(session: Session, name: str | None) -> dict[str, Any]:
    """Bring an archived experiment back."""
    experiment = _find(session, name, "ArchivedOnly")
    experiment.reactivate()
    return experiment.to_dict()
