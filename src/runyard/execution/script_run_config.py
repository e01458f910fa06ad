"""ScriptRunConfig: a script (or command) in a source folder, to submit as a run."""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any

from ..errors import UserError
from . import distributed
from .environment import Environment
from .run_configuration import RunConfiguration

DEFAULT_MAX_RUN_DURATION = 2_592_000  # 30 days


class ScriptRunConfig:
    """What ``experiment.submit`` runs.

        >>> src = ScriptRunConfig(source_directory=".", script="train.py",
        ...                       arguments=["--alpha", 0.1])
        >>> run = exp.submit(src)                         # doctest: +SKIP
        >>> run.wait_for_completion(show_output=True)     # doctest: +SKIP

    ``command=["python", "train.py", "--alpha", "0.1"]`` is the alternative to
    ``script`` plus ``arguments``. Without ``run_config`` the target is ``local``.
    """

    def __init__(
        self,
        source_directory: str | os.PathLike[str] = ".",
        script: str | None = None,
        arguments: list[Any] | None = None,
        run_config: RunConfiguration | None = None,
        compute_target: Any = None,
        environment: Environment | None = None,
        max_run_duration_seconds: int | None = DEFAULT_MAX_RUN_DURATION,
        command: list[str] | str | None = None,
        distributed_job_config: Any = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise UserError(
                f"ScriptRunConfig does not support {', '.join(sorted(unsupported))} here"
            )
        if command is not None and (script is not None or arguments):
            raise UserError("give either command= or script= (with arguments=), not both")
        self.source_directory = os.fspath(source_directory)
        if run_config is None:
            rc = RunConfiguration()
            rc.target = _target_name(compute_target) or "local"
            if environment is not None:
                rc.environment = environment
            rc.max_run_duration_seconds = max_run_duration_seconds
            if distributed_job_config is not None:
                distributed.apply(rc, distributed_job_config)
        else:
            rc = copy.deepcopy(run_config)
            given = {
                "compute_target": compute_target,
                "environment": environment,
                "distributed_job_config": distributed_job_config,
                "max_run_duration_seconds": (
                    None
                    if max_run_duration_seconds == DEFAULT_MAX_RUN_DURATION
                    else max_run_duration_seconds
                ),
            }
            for key, value in given.items():
                if value is not None:
                    warnings.warn(
                        f"{key} is ignored because run_config is given; set it on the "
                        "RunConfiguration instead",
                        UserWarning,
                        stacklevel=2,
                    )
        if script is not None:
            rc.script = script
        if arguments is not None:
            rc.arguments = list(arguments)
        if command is not None:
            rc.command = command
            rc.script = None
        self.run_config = rc

    @property
    def script(self) -> str | None:
        return self.run_config.script

    @property
    def arguments(self) -> list[Any]:
        return self.run_config.arguments

    @property
    def command(self) -> list[str] | str | None:
        return self.run_config.command


def command_line(rc: RunConfiguration, interpreter: str) -> list[str]:
    """The command to start in the run's folder; ``python`` in a command is ``interpreter``."""
    if rc.command is not None:
        if isinstance(rc.command, str):
            import shlex

            parts = shlex.split(rc.command)
        else:
            parts = [str(p) for p in rc.command]
        if not parts:
            raise UserError("command= is empty; give the program and its arguments")
        if parts[0] in ("python", "python3"):
            parts[0] = interpreter
        return parts
    if not rc.script:
        raise UserError("Please specify the script to run either via parameter or in the runconfig")
    return [interpreter, rc.script, *map(_arg, rc.arguments)]


def _arg(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _target_name(target: Any) -> str | None:
    if target is None or isinstance(target, str):
        return target
    return str(getattr(target, "name", target))
