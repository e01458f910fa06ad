"""Distributed-job configurations: how many processes a run starts, on how many nodes.

    >>> from runyard.execution import PyTorchConfiguration
    >>> src = ScriptRunConfig(".", "train.py", compute_target="ray-cpu",        # doctest: +SKIP
    ...                       distributed_job_config=PyTorchConfiguration(process_count=4))

Every process gets torch.distributed's environment variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``…) and logs into the same run.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise UserError(f"{what} must be a whole number from 1 to 1024, not {value!r}")
    return value


class PyTorchConfiguration:
    """``process_count`` processes in all (default: one per node) on ``node_count`` nodes."""

    def __init__(
        self,
        communication_backend: str = "Nccl",
        process_count: int | None = None,
        node_count: int = 1,
    ) -> None:
        self.communication_backend = str(communication_backend)
        self.node_count = _count(node_count, "node_count")
        self.process_count = _count(
            node_count if process_count is None else process_count, "process_count"
        )
        if self.process_count % self.node_count:
            raise UserError(
                f"process_count={self.process_count} cannot be shared evenly by "
                f"node_count={self.node_count}; give a multiple of node_count"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "communicationBackend": self.communication_backend,
            "processCount": self.process_count,
            "nodeCount": self.node_count,
        }


class MpiConfiguration:
    """``process_count_per_node`` processes on each of ``node_count`` nodes.

    runyard starts the processes itself with torch.distributed's variables (and Open MPI's
    ``OMPI_COMM_WORLD_*`` names for rank and size); it does not run ``mpirun``.
    """

    def __init__(self, process_count_per_node: int = 1, node_count: int = 1) -> None:
        self.process_count_per_node = _count(process_count_per_node, "process_count_per_node")
        self.node_count = _count(node_count, "node_count")

    @property
    def process_count(self) -> int:
        return self.process_count_per_node * self.node_count

    def to_dict(self) -> dict[str, Any]:
        return {"processCountPerNode": self.process_count_per_node, "nodeCount": self.node_count}


def apply(rc: Any, config: Any) -> None:
    """Set ``rc`` (a RunConfiguration) from a distributed-job configuration."""
    if isinstance(config, PyTorchConfiguration):
        rc.framework, rc.communicator = "PyTorch", config.communication_backend
        rc.pytorch, rc.mpi = config.to_dict(), None
    elif isinstance(config, MpiConfiguration):
        rc.framework, rc.communicator = "Python", "IntelMpi"
        rc.pytorch, rc.mpi = None, config.to_dict()
    else:
        raise UserError(
            "distributed_job_config must be a PyTorchConfiguration or an MpiConfiguration, "
            f"not {type(config).__name__}"
        )
    rc.node_count = config.node_count


def layout(rc: Any) -> tuple[int, int]:
    """(processes in all, nodes) of a run configuration."""
    if rc.pytorch:
        return int(rc.pytorch["processCount"]), int(rc.pytorch["nodeCount"])
    if rc.mpi:
        nodes = int(rc.mpi["nodeCount"])
        return int(rc.mpi["processCountPerNode"]) * nodes, nodes
    return 1, 1
