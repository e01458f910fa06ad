"""``runyard init`` (also ``runyard folder attach``): make a folder a runyard project."""

from __future__ import annotations

import os
import re
from typing import Any

import click

from ._common import Session, command

DEFAULT_IGNORE = """\
# Files left out of run snapshots (gitignore syntax). Written by `runyard init`.
.git
.runyard
.ipynb_checkpoints
__pycache__
*.pyc
.venv
venv
outputs
logs
"""


@click.group("folder", epilog="Example: runyard folder attach -e ridge-sweep")
def folder_group() -> None:
    """Attach a folder to a workspace (same as runyard init)."""


def _experiment_from(folder: str) -> str:
    name = re.sub(r"[^\w\-]+", "-", os.path.basename(os.path.abspath(folder))).lstrip("-_")
    if not name:
        raise click.UsageError(
            f"the folder name of {folder!r} cannot be an experiment name; pass -e NAME"
        )
    return name[:255]


def _init(
    path: str, experiment: str | None, workspace_uri: str | None, artifacts: str | None = None
) -> dict[str, Any]:
    from .._validation import check_experiment_name
    from ..experiment import Experiment
    from ..store import _without_password
    from ..workspace import CONFIG_DIR, Workspace

    folder = os.path.abspath(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise click.UsageError(f"--path {path!r} is a file; give a folder")
    os.makedirs(folder, exist_ok=True)
    name = check_experiment_name(experiment) if experiment else _experiment_from(folder)
    if workspace_uri is not None and not workspace_uri:
        raise click.UsageError("--workspace must not be empty: give a folder or postgresql:// URI")
    uri = workspace_uri or os.path.join(folder, CONFIG_DIR)
    if artifacts is None and uri.startswith(("postgresql://", "postgres://")):
        raise click.UsageError(
            "a postgresql:// workspace keeps its files in a folder every user can reach: "
            "add --artifacts DIR (or set RUNYARD_ARTIFACTS)"
        )
    workspace = Workspace(uri, artifacts)
    Experiment(workspace, name)  # so that `run list` right after init finds it
    config = workspace.write_config(folder, experiment=name)
    ignore = os.path.join(folder, ".runyardignore")
    if os.path.exists(ignore):
        ignore_note = f"{ignore} (kept as it was)"
    else:
        with open(ignore, "w", encoding="utf-8") as fh:
            fh.write(DEFAULT_IGNORE)
        ignore_note = ignore
    return {
        "Experiment name": name,
        "Workspace": _without_password(workspace.uri),
        "Project path": folder,
        "Config file": config,
        "Ignore file": ignore_note,
    }


def register(root: click.Group) -> None:
    for group, name in ((root, "init"), (folder_group, "attach")):

        @command(group, name, f"runyard {'folder attach' if group is folder_group else 'init'} "
                 "--path ./project -e ridge-sweep")  # fmt: skip
        @click.option(
            "--path",
            default=".",
            show_default=True,
            type=click.Path(),
            help="The project folder (created if missing).",
        )
        @click.option(
            "-e",
            "--experiment-name",
            "experiment",
            metavar="NAME",
            help="Default experiment (default: the folder's name).",
        )
        def init(session: Session, experiment: str | None) -> dict[str, Any]:
            """Write .runyard/config.json (and a default .runyardignore) into a folder.

            The workspace is a local one in <folder>/.runyard unless --workspace names
            another (a folder or a postgresql:// URI, which also needs --artifacts DIR). This
            is the only command that creates a workspace.
            """
            return _init(session.path, experiment, session.workspace_uri, session.artifacts)

    root.add_command(folder_group)
