"""Compute targets: where script runs go besides ``local``.

A compute target is attached to the workspace once, by name, and every member of the team
then submits to it::

    >>> from runyard.compute import ComputeTarget, RayCompute
    >>> config = RayCompute.attach_configuration(address="http://head:8265")
    >>> target = ComputeTarget.attach(ws, "ray-cpu", config)          # doctest: +SKIP
    >>> src = ScriptRunConfig(".", "train.py", compute_target=target)  # doctest: +SKIP
    >>> sorted(ws.compute_targets)                                     # doctest: +SKIP
    ['ray-cpu']

The only type today is ``ray``: a Ray cluster reached through its Jobs API (the address of
its dashboard). docs/compute.md tells how runs go there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import UserError

if TYPE_CHECKING:
    from .records import ComputeRecord
    from .workspace import Workspace


@dataclass(frozen=True)
class RayAttachConfiguration:
    """What ``ComputeTarget.attach`` needs to attach a Ray cluster."""

    address: str
    type: str = "ray"


class ComputeTarget:
    """A compute target attached to the workspace.

    >>> target = ComputeTarget(workspace=ws, name="ray-cpu")   # doctest: +SKIP
    >>> target.type, target.address                            # doctest: +SKIP
    ('ray', 'http://head:8265')
    """

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self._record = workspace._store.get_compute(name)

    @classmethod
    def _from_record(cls, workspace: Workspace, record: ComputeRecord) -> ComputeTarget:
        klass = RayCompute if record.type == "ray" else ComputeTarget
        target = klass.__new__(klass)
        target.workspace = workspace
        target._record = record
        return target

    @staticmethod
    def attach(
        workspace: Workspace, name: str, attach_configuration: RayAttachConfiguration
    ) -> ComputeTarget:
        """Attach a cluster under ``name``; it must answer at its address now."""
        if not isinstance(attach_configuration, RayAttachConfiguration):
            raise UserError(
                "attach_configuration must come from RayCompute.attach_configuration("
                "address='http://head:8265')"
            )
        from ._validation import check_compute

        name, kind, address = check_compute(
            name, attach_configuration.type, attach_configuration.address
        )
        ray_version(address)  # a wrong address fails here, not at the first submit
        record = workspace._store.attach_compute(name, kind, address, created_by=_user())
        return ComputeTarget._from_record(workspace, record)

    @staticmethod
    def list(workspace: Workspace) -> list[ComputeTarget]:
        return [ComputeTarget._from_record(workspace, r) for r in workspace._store.list_computes()]

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def type(self) -> str:
        return self._record.type

    @property
    def address(self) -> str:
        return self._record.address

    @property
    def provisioning_state(self) -> str:
        return "Succeeded"

    def get_status(self) -> dict[str, Any]:
        """Whether the cluster answers now, and its Ray version."""
        try:
            return {"state": "Reachable", "rayVersion": ray_version(self.address)}
        except UserError as exc:
            return {"state": "Unreachable", "error": str(exc)}

    def detach(self) -> None:
        """Remove the target from the workspace (runs already sent there go on)."""
        self.workspace._store.detach_compute(self.name)

    def serialize(self) -> dict[str, Any]:
        """The target as ``runyard compute show`` prints it."""
        from .run import format_time

        record = self._record
        return {
            "name": record.name,
            "type": record.type,
            "address": record.address,
            "createdBy": record.created_by,
            "createdUtc": format_time(record.created),
            "provisioningState": self.provisioning_state,
        }

    def __repr__(self) -> str:
        return f"ComputeTarget(name={self.name!r}, type={self.type!r}, address={self.address!r})"


class RayCompute(ComputeTarget):
    """A Ray cluster, reached through its Jobs API at the dashboard's address."""

    @staticmethod
    def attach_configuration(address: str) -> RayAttachConfiguration:
        """``address``: the dashboard URL, such as ``http://head:8265``."""
        return RayAttachConfiguration(address)


def ray_version(address: str) -> str:
    """The Ray version the cluster at ``address`` reports; UserError if it does not answer."""
    import httpx

    try:
        response = httpx.get(f"{address.rstrip('/')}/api/version", timeout=10.0)
        response.raise_for_status()
        version = str(response.json()["ray_version"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"no Ray cluster answers at {address}: {exc}; start one (`ray start --head "
            "--dashboard-host 0.0.0.0`) or give the address of its dashboard, such as "
            "http://head:8265"
        ) from None
    return version


def _user() -> str | None:
    from .run import user_name

    return user_name()
