"""Environment: which Python runs a submitted script, and with which packages."""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError


@dataclass
class PythonSection:
    """``environment.python``: the interpreter and, optionally, pip requirements.

    ``user_managed_dependencies=True`` runs ``interpreter_path`` as it is (default: the
    interpreter that submits). With ``pip_requirements`` runyard builds a virtualenv once
    per distinct set of requirements and reuses it.
    """

    user_managed_dependencies: bool = False
    interpreter_path: str | None = None
    pip_requirements: list[str] | None = None
    conda_dependencies_file: str | None = None

    def interpreter(self) -> str:
        return self.interpreter_path or sys.executable


@dataclass
class Environment:
    """The software a script runs with.

    >>> env = Environment("mine")
    >>> env.python.user_managed_dependencies = True
    >>> env.python.interpreter_path = "/opt/venvs/train/bin/python"
    >>> pip_env = Environment.from_pip_requirements("sk", "requirements.txt")  # doctest: +SKIP
    """

    name: str = "default-environment"
    version: str | None = None
    python: PythonSection = field(default_factory=PythonSection)
    _environment_variables: dict[str, str] = field(default_factory=dict)

    @property
    def environment_variables(self) -> dict[str, str]:
        return self._environment_variables

    @environment_variables.setter
    def environment_variables(self, value: dict[str, str]) -> None:
        warnings.warn(
            "Property environment_variables is deprecated. Use "
            "RunConfiguration.environment_variables to set runtime variables.",
            DeprecationWarning,
            stacklevel=2,
        )
        self._environment_variables = dict(value)

    @classmethod
    def from_pip_requirements(
        cls, name: str, file_path: str | os.PathLike[str], pip_version: str | None = None
    ) -> Environment:
        """An environment whose packages are the lines of a requirements file."""
        path = os.fspath(file_path)
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise UserError(f"cannot read requirements file {path!r}: {exc.strerror}") from None
        requirements = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if pip_version:
            requirements.insert(0, f"pip=={pip_version}")
        env = cls(name)
        env.python.pip_requirements = requirements
        return env

    @classmethod
    def from_conda_specification(cls, name: str, file_path: str) -> Environment:
        """Not available: runyard builds pip virtualenvs, not conda environments."""
        raise UserError(
            f"conda environments are not supported (asked for {file_path!r}); list the "
            "packages in a requirements file and use Environment.from_pip_requirements, or "
            "point python.interpreter_path at an existing conda environment's python with "
            "python.user_managed_dependencies = True"
        )

    def requirements_hash(self) -> str | None:
        """Identifies the virtualenv that serves these requirements (None: no virtualenv)."""
        if not self.python.pip_requirements or self.python.user_managed_dependencies:
            return None
        text = "\n".join([self.python.interpreter(), *sorted(self.python.pip_requirements)])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def to_dict(self) -> dict[str, Any]:
        python: dict[str, Any] = {
            "userManagedDependencies": self.python.user_managed_dependencies,
            "interpreterPath": self.python.interpreter(),
        }
        if self.python.pip_requirements is not None:
            python["pipRequirements"] = list(self.python.pip_requirements)
        if self.python.conda_dependencies_file:
            python["condaDependenciesFile"] = self.python.conda_dependencies_file
        return {
            "name": self.name,
            "version": self.version,
            "environmentVariables": dict(self._environment_variables),
            "python": python,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Environment:
        python = data.get("python") or {}
        env = cls(str(data.get("name") or "default-environment"), data.get("version"))
        env.python = PythonSection(
            user_managed_dependencies=bool(python.get("userManagedDependencies", False)),
            interpreter_path=python.get("interpreterPath"),
            pip_requirements=python.get("pipRequirements"),
            conda_dependencies_file=python.get("condaDependenciesFile"),
        )
        env._environment_variables = {
            str(k): str(v) for k, v in (data.get("environmentVariables") or {}).items()
        }
        return env
