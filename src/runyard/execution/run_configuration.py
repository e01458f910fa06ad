"""RunConfiguration: everything about how a script is run, saved and loaded as YAML."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .environment import Environment

CONFIG_DIRS = (".runyard", ".azureml", "aml_config")


@dataclass
class HistoryConfiguration:
    """What run history keeps of a script run."""

    output_collection: bool = True
    snapshot_project: bool = True
    directories_to_watch: list[str] = field(default_factory=lambda: ["logs"])


class RunConfiguration:
    """How to run a script: what, where, with which environment and limits.

    >>> rc = RunConfiguration(script="train.py", arguments=["--alpha", 0.1])
    >>> rc.environment_variables["SEED"] = "1"
    >>> rc.save("project", name="local")        # doctest: +SKIP
    >>> RunConfiguration.load("project", "local").script   # doctest: +SKIP
    'train.py'
    """

    def __init__(
        self,
        script: str | None = None,
        arguments: list[Any] | None = None,
        framework: str = "Python",
        communicator: str = "None",
        command: list[str] | str | None = None,
        **ignored: Any,
    ) -> None:
        self.script = script
        self.arguments: list[Any] = list(arguments or [])
        self.command: list[str] | str | None = command
        self.framework = framework
        self.communicator = communicator
        self.target = "local"
        self.node_count = 1
        self.pytorch: dict[str, Any] | None = None  # see distributed.py
        self.mpi: dict[str, Any] | None = None
        self.max_run_duration_seconds: int | None = None
        self.environment = Environment("default-environment")
        self.environment_variables: dict[str, str] = {}
        self.history = HistoryConfiguration()

    def __repr__(self) -> str:
        return f"RunConfiguration(script={self.script!r}, target={self.target!r})"

    # -- serialisation -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The run definition: camelCase keys, as stored with the run and in YAML."""
        return {
            "script": self.script,
            "command": self.command,
            "arguments": [
                a if isinstance(a, (int, float, bool)) else str(a) for a in self.arguments
            ],
            "target": self.target,
            "framework": self.framework,
            "communicator": self.communicator,
            "maxRunDurationSeconds": self.max_run_duration_seconds,
            "nodeCount": self.node_count,
            "pytorch": self.pytorch,
            "mpi": self.mpi,
            "environment": self.environment.to_dict(),
            "history": {
                "outputCollection": self.history.output_collection,
                "snapshotProject": self.history.snapshot_project,
                "directoriesToWatch": list(self.history.directories_to_watch),
            },
            "environmentVariables": dict(self.environment_variables),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfiguration:
        if not isinstance(data, dict):
            raise UserError("a run configuration must be a mapping of settings")
        rc = cls(data.get("script"), data.get("arguments"), command=data.get("command"))
        rc.framework = data.get("framework", "Python")
        rc.communicator = data.get("communicator", "None")
        rc.target = str(data.get("target") or "local")
        rc.node_count = int(data.get("nodeCount") or 1)
        rc.pytorch = data.get("pytorch") or None
        rc.mpi = data.get("mpi") or None
        rc.max_run_duration_seconds = data.get("maxRunDurationSeconds")
        rc.environment = Environment.from_dict(data.get("environment") or {})
        history = data.get("history") or {}
        rc.history = HistoryConfiguration(
            output_collection=bool(history.get("outputCollection", True)),
            snapshot_project=bool(history.get("snapshotProject", True)),
            directories_to_watch=list(history.get("directoriesToWatch", ["logs"])),
        )
        rc.environment_variables = {
            str(k): str(v) for k, v in (data.get("environmentVariables") or {}).items()
        }
        return rc

    def save(self, path: str | None = None, name: str | None = None) -> str:
        """Write YAML to a file ``path``, or to ``<path>/.runyard/<name>.runconfig``."""
        import yaml

        base = os.fspath(path) if path is not None else os.getcwd()
        if os.path.isdir(base):
            if not name:
                raise UserError("Cannot save a runconfig without a name specified")
            target = os.path.join(base, CONFIG_DIRS[0], f"{name}.runconfig")
        else:
            target = base
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        with open(target, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.to_dict(), fh, default_flow_style=False, sort_keys=False)
        return target

    @classmethod
    def load(cls, path: str, name: str | None = None) -> RunConfiguration:
        """Read a run configuration from a file, or by ``name`` from a project folder."""
        import yaml

        path = os.fspath(path)
        candidates = [path]
        if os.path.isdir(path):
            candidates = []
            if name:
                for folder in CONFIG_DIRS:
                    candidates += [
                        os.path.join(path, folder, name),
                        os.path.join(path, folder, f"{name}.runconfig"),
                    ]
                candidates.append(os.path.join(path, f"{name}.runconfig"))
        for candidate in candidates:
            if os.path.isfile(candidate):
                with open(candidate, encoding="utf-8") as fh:
                    try:
                        data = yaml.safe_load(fh)
                    except yaml.YAMLError as exc:
                        raise UserError(f"{candidate} is not valid YAML: {exc}") from None
                return cls.from_dict(data)
        tried = ", ".join(candidates) or f"{path} (give a name to look inside it)"
        raise UserError(
            f"Failed to load RunConfiguration from path={path} name={name}; looked for {tried}"
        )
