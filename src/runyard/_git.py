"""Git facts about a source folder, recorded as run properties."""

from __future__ import annotations

import os
import subprocess

_ENV = {
    "azureml.git.repository_uri": "RUNYARD_GIT_REPOSITORY_URI",
    "azureml.git.branch": "RUNYARD_GIT_BRANCH",
    "azureml.git.commit": "RUNYARD_GIT_COMMIT",
    "azureml.git.dirty": "RUNYARD_GIT_DIRTY",
    "azureml.git.build_id": "RUNYARD_GIT_BUILD_ID",
    "azureml.git.build_uri": "RUNYARD_GIT_BUILD_URI",
}
_MLFLOW = {
    "azureml.git.repository_uri": "mlflow.source.git.repoURL",
    "azureml.git.branch": "mlflow.source.git.branch",
    "azureml.git.commit": "mlflow.source.git.commit",
}


def _inside_repository(directory: str) -> bool:
    current = os.path.abspath(directory)
    while True:
        if os.path.exists(os.path.join(current, ".git")):
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def _git(directory: str, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_properties(directory: str) -> dict[str, str]:
    """``azureml.git.*`` and ``mlflow.source.git.*`` properties, when in a repository."""
    found: dict[str, str] = {}
    if _inside_repository(directory):
        commit = _git(directory, "rev-parse", "HEAD")
        if commit is not None:
            found["azureml.git.commit"] = commit
            uri = _git(directory, "ls-remote", "--get-url")
            if uri:
                found["azureml.git.repository_uri"] = uri
            branch = _git(directory, "symbolic-ref", "--short", "HEAD")
            if branch:
                found["azureml.git.branch"] = branch
            status = _git(directory, "status", "--porcelain", ".")
            if status is not None:
                found["azureml.git.dirty"] = str(bool(status))
    for key, env in _ENV.items():
        if os.environ.get(env):
            found[key] = os.environ[env]
    for key, mirror in _MLFLOW.items():
        if key in found:
            found[mirror] = found[key]
    return found
