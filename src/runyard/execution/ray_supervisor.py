"""The supervisor of a run on a Ray cluster: its Ray job's entrypoint.

    python -m runyard.execution.ray_supervisor RUN_ID     (in the job's working directory)

It is the local supervisor with Ray in place of the machine's slots (see ``ray_target``
for the two ways a run goes): the same statuses, heartbeats, live ``std_log.txt``, watched
``./logs``, collected ``./outputs``, time limit and cancel. A run of several processes (or
with pip requirements) reserves one CPU per process in a placement group (Queued), starts
one actor per process with Ray's runtime environment for the pip packages (Preparing),
gives each torch.distributed's variables, and fails when any process fails.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from typing import Any

from .. import _ray_jobs
from ..workspace import Workspace
from . import distributed
from .failure import RunFailure
from .ray_processes import ProcessHost, process_log
from .ray_target import uses_placement_group
from .supervisor import (
    STATUS_POLL,
    WATCH_EVERY,
    Stop,
    Supervisor,
    _terminated,
    cancel_grace,
    exit_reason,
    not_started,
)


class RaySupervisor(Supervisor):
    def __init__(self, workspace: Workspace, run: Any) -> None:
        super().__init__(workspace, run, 1)
        self.processes, self.nodes = distributed.layout(self.rc)
        self.hosted = uses_placement_group(self.rc)
        self.group: Any = None
        self.actors: list[Any] = []
        self.failed_rank: tuple[int, int, list[str]] | None = None

    # -- where this differs from the local supervisor ------------------------------------
    def announce(self) -> None:
        self.store.heartbeat(self.run.id)  # the supervisor stays the Ray job (_ray_jobs)

    def queue(self) -> int | None:
        """Queued by the submitter while Ray had no room; a placement group waits here."""
        self.move("Queued", ("NotStarted", "Queued"))
        if self.hosted:
            self.reserve()
        return None

    def lay_out(self) -> None:
        """The job's working directory is the run's snapshot."""
        shutil.copytree(os.getcwd(), self.folder, symlinks=True, dirs_exist_ok=True)

    def interpreter(self, env: dict[str, str]) -> str:
        """The cluster's Python: this job's, or Ray's runtime environment's in an actor."""
        python = self.rc.environment.python
        if python.user_managed_dependencies and python.interpreter_path:
            return python.interpreter_path
        return "python" if self.hosted else sys.executable

    def prepare(self) -> tuple[list[str], dict[str, str]]:
        argv, env = super().prepare()
        if self.hosted:
            self.start_hosts()
        return argv, env

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        if not self.hosted:
            super().start(argv, env)
            return
        import ray

        extra = {k: v for k, v in env.items() if os.environ.get(k) != v}
        removed = [k for k in os.environ if k not in env]
        address, port = ray.get(self.actors[0].rendezvous.remote())
        starts = []
        per_node = self.processes // self.nodes
        for rank, actor in enumerate(self.actors):
            variables = {
                "RANK": str(rank),
                "WORLD_SIZE": str(self.processes),
                "LOCAL_RANK": str(rank % per_node),
                "LOCAL_WORLD_SIZE": str(per_node),
                "NODE_RANK": str(rank // per_node),
                "GROUP_RANK": str(rank // per_node),
                "MASTER_ADDR": address,
                "MASTER_PORT": str(port),
                "OMPI_COMM_WORLD_RANK": str(rank),
                "OMPI_COMM_WORLD_SIZE": str(self.processes),
                "OMPI_COMM_WORLD_LOCAL_RANK": str(rank % per_node),
            }
            starts.append(actor.start.remote(argv, {**extra, **variables}, removed, cancel_grace()))
        try:
            self.wait_for(starts)
        except ray.exceptions.RayTaskError as exc:
            raise RunFailure(
                f"could not start {argv[0]!r}: {exc.cause}", "ScriptNotStarted"
            ) from None
        self.started = time.monotonic()
        self.say(f"started {self.processes} processes; address {address}:{port}")

    def pump(self) -> int:
        if not self.hosted:
            return super().pump()
        import ray

        waits = {actor.wait.remote(): rank for rank, actor in enumerate(self.actors)}
        limit = self.rc.max_run_duration_seconds
        next_watch = time.monotonic() + WATCH_EVERY
        while waits:
            done, _ = ray.wait(list(waits), num_returns=1, timeout=STATUS_POLL)
            for ref in done:
                rank = waits.pop(ref)
                try:
                    code, tail = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    raise RunFailure(
                        f"process {rank} of the run was lost on the Ray cluster: {_short(exc)}",
                        "ProcessLost",
                    ) from None
                self.say(f"process {rank} ended with exit status {code}")
                if code != 0:
                    self.failed_rank = (rank, code, tail)
                    return code
            status = self.current()
            if status not in ("Running", "NotResponding"):
                raise Stop(status)
            now = time.monotonic()
            if limit and now - self.started > limit:
                raise RunFailure(
                    f"the run reached its time limit (max_run_duration_seconds={limit:g}) "
                    "and was stopped",
                    "RunTimeLimitExceeded",
                )
            if now >= next_watch:
                next_watch = now + WATCH_EVERY
                for actor in self.actors:
                    actor.sync.remote(list(self.rc.history.directories_to_watch))
        return 0

    def collect(self) -> None:
        if not self.hosted:
            super().collect()
            return
        folders = list(self.rc.history.directories_to_watch)
        self.wait_for(
            [a.collect.remote(folders, self.rc.history.output_collection) for a in self.actors]
        )

    def failure_message(self, code: int) -> str:
        if self.failed_rank is None:
            return super().failure_message(code)
        rank, status, tail = self.failed_rank
        reason = exit_reason(status)
        message = f"process {rank} of {self.processes} ended with {reason} ({process_log(rank)})"
        if tail:
            message += ". Last lines of its stderr:\n" + "\n".join(tail)
        return message

    def end_processes(self) -> None:
        super().end_processes()
        if not self.actors:
            return
        import ray

        try:
            ray.get(
                [a.stop.remote(cancel_grace()) for a in self.actors], timeout=cancel_grace() + 10
            )
        except Exception as exc:  # an actor that is gone has nothing left to stop
            self.say(f"stopping the processes: {exc}")

    def wind_down(self) -> None:
        if not self.hosted:
            super().wind_down()
            return
        self.end_processes()
        if self.actors and self.started:
            try:
                self.wait_for(
                    [a.sync.remote(list(self.rc.history.directories_to_watch)) for a in self.actors]
                )
            except Exception as exc:
                self.say(f"uploading ./logs: {exc}")

    def clean_up(self, slot: int | None) -> None:
        try:
            super().clean_up(slot)
        finally:
            self.release()

    # -- Ray ---------------------------------------------------------------------------
    def reserve(self) -> None:
        """Wait (Queued) until the cluster holds a CPU for every process."""
        import ray
        from ray.util.placement_group import placement_group

        ray.init(logging_level=logging.ERROR, log_to_driver=False)
        per_node = self.processes // self.nodes
        strategy = "STRICT_PACK" if self.nodes == 1 else "STRICT_SPREAD"
        self.group = placement_group([{"CPU": per_node}] * self.nodes, strategy=strategy)
        self.say(f"waiting for {self.processes} CPUs on {self.nodes} node(s) ({strategy})")
        self.wait_for([self.group.ready()])

    def start_hosts(self) -> None:
        """One actor per process (Preparing: Ray builds the pip environment for them)."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        per_node = self.processes // self.nodes
        requirements = self.rc.environment.python.pip_requirements or []
        runtime_env = {"pip": requirements} if self.rc.environment.requirements_hash() else None
        host = ray.remote(ProcessHost)
        for rank in range(self.processes):
            strategy = PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=rank // per_node
            )
            options: dict[str, Any] = {
                "num_cpus": 1,
                "max_concurrency": 4,
                "scheduling_strategy": strategy,
            }
            if runtime_env:
                options["runtime_env"] = runtime_env
            self.actors.append(host.options(**options).remote(self.run.id, rank))
        if runtime_env:
            self.say(f"Ray builds the environment: pip {' '.join(requirements)}")
        try:
            nodes = self.wait_for([a.ready.remote() for a in self.actors])
        except ray.exceptions.RuntimeEnvSetupError as exc:
            raise RunFailure(
                f"Ray could not build the run's environment: {_short(exc)}",
                "EnvironmentBuildFailed",
            ) from None
        except ray.exceptions.RayActorError as exc:
            raise RunFailure(
                f"the run's processes could not start on Ray: {_short(exc)}", "ProcessLost"
            ) from None
        self.say(f"processes placed on {', '.join(sorted(set(nodes)))}")

    def wait_for(self, refs: list[Any]) -> list[Any]:
        """Ray's results of ``refs``, checking every few tenths of a second that the run
        was not canceled meanwhile (Stop)."""
        import ray

        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=STATUS_POLL)
            if pending:
                self.check_status()
        return list(ray.get(refs))

    def release(self) -> None:
        if not self.actors and self.group is None:
            return
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        if self.group is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self.group)
            except Exception:
                pass


def _short(exc: BaseException) -> str:
    """Ray's account of an error, cut to fit a run's error (it may hold pages of log)."""
    return _ray_jobs.cut(str(exc).strip())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m runyard.execution.ray_supervisor RUN_ID", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminated)
    workspace = Workspace(
        os.environ["RUNYARD_URI"], os.environ.get("RUNYARD_ARTIFACTS"), _create=False
    )
    try:
        RaySupervisor(workspace, workspace.get_run(argv[0])).main()
    except BaseException as exc:
        not_started(workspace, argv[0], exc)  # its stderr is Ray's log of the job
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
