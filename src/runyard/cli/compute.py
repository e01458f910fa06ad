"""``runyard compute …``: attach, list, show and detach compute targets."""

from __future__ import annotations

from typing import Any

import click

from ._common import Session, command, path_option
from ._output import local_time


@click.group("compute", epilog="Example: runyard compute attach ray-cpu --type ray "
             "--address http://head:8265")  # fmt: skip
def group() -> None:
    """Compute targets: clusters that script runs can be sent to (--target NAME)."""


def compute_rows(result: Any) -> list[dict[str, Any]]:
    items = result if isinstance(result, list) else [result]
    return [
        {
            "Name": c.get("name", ""),
            "Type": c.get("type", ""),
            "Address": c.get("address", ""),
            "Created by": c.get("createdBy") or "",
            "Created": local_time(c.get("createdUtc")),
        }
        for c in items
    ]


@command(
    group, "attach", "runyard compute attach ray-cpu --type ray --address http://head:8265",
    table=compute_rows,
)  # fmt: skip
@click.argument("name")
@click.option(
    "--type", "kind", type=click.Choice(["ray"]), required=True, help="What kind of cluster."
)
@click.option("--address", required=True, metavar="URL", help="The Ray dashboard's URL (Jobs API).")
@path_option
def attach(session: Session, name: str, kind: str, address: str) -> dict[str, Any]:
    """Attach a cluster to the workspace under NAME; it must answer at ADDRESS now."""
    from ..compute import ComputeTarget, RayCompute

    config = RayCompute.attach_configuration(address)
    return ComputeTarget.attach(session.workspace(), name, config).serialize()


@command(group, "list", "runyard compute list -o table", table=compute_rows)
@path_option
def list_targets(session: Session) -> list[dict[str, Any]]:
    """List the compute targets attached to the workspace."""
    from ..compute import ComputeTarget

    return [t.serialize() for t in ComputeTarget.list(session.workspace())]


@command(group, "show", "runyard compute show ray-cpu", table=compute_rows)
@click.argument("name")
@path_option
def show(session: Session, name: str) -> dict[str, Any]:
    """Show a compute target and whether its cluster answers now."""
    from ..compute import ComputeTarget

    target = ComputeTarget(session.workspace(), name)
    return {**target.serialize(), "status": target.get_status()}


@command(group, "detach", "runyard compute detach ray-cpu")
@click.argument("name")
@path_option
def detach(session: Session, name: str) -> dict[str, Any]:
    """Detach a compute target; runs already sent to it go on."""
    from ..compute import ComputeTarget

    target = ComputeTarget(session.workspace(), name)
    target.detach()
    return target.serialize()
