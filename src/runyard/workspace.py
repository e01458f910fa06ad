"""Workspace: where a project's runs are kept, found from ``.runyard/config.json``."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .errors import ConfigNotFound, UserError

if TYPE_CHECKING:
    from .artifacts.base import ArtifactStore
    from .compute import ComputeTarget
    from .experiment import Experiment
    from .run import Run
    from .store.base import Store

CONFIG_DIR = ".runyard"
CONFIG_FILE = "config.json"
ENV_URI = "RUNYARD_URI"
ENV_ARTIFACTS = "RUNYARD_ARTIFACTS"
ENV_MAX_RUNS = "RUNYARD_MAX_CONCURRENT_RUNS"
# runyard studio names its URL in this file of the workspace's local folder while it runs
STUDIO_FILE = "studio.json"
DEFAULT_STUDIO_URL = "http://127.0.0.1:8600"


class Workspace:
    """A run history: an embedded SQLite workspace directory, a PostgreSQL database, or a
    runyard server (``http(s)://``; its token from ``RUNYARD_TOKEN`` or ``runyard login``).

        >>> from runyard import Workspace
        >>> ws = Workspace("./runs")                      # doctest: +SKIP
        >>> ws.write_config()                             # doctest: +SKIP
        >>> ws = Workspace.from_config()                  # doctest: +SKIP

    A PostgreSQL workspace keeps artifacts in a directory every user can reach:
    ``Workspace("postgresql://me@db/runs", artifacts="/shared/runyard")``, or in an
    S3-compatible bucket: ``artifacts="s3://team-runs/runyard"`` (``pip install
    'runyard[s3]'``; endpoint and credentials from the usual AWS settings). A server keeps
    the files itself: ``Workspace("https://runyard.example")``.
    """

    def __init__(
        self, uri: str | os.PathLike[str], artifacts: str | None = None, *, _create: bool = True
    ) -> None:
        from .store import open_workspace

        uri = os.fspath(uri)
        if not uri:
            raise UserError("workspace URI must not be empty: give a folder or postgresql:// URI")
        if "://" not in uri and not uri.startswith("sqlite:"):
            uri = os.path.abspath(os.path.expanduser(uri))
        self.uri = uri.rstrip("/") if uri.startswith(("http://", "https://")) else uri
        self.max_concurrent_runs = _max_concurrent_runs(os.environ.get(ENV_MAX_RUNS))
        self.default_experiment: str | None = None  # from the config's "experiment"
        self.project_path: str | None = None  # the folder holding .runyard/config.json
        opened = open_workspace(self.uri, artifacts, create=_create)
        self._store: Store = opened.store
        self._artifacts: ArtifactStore = opened.artifacts
        self.artifacts_root = opened.artifacts_root
        self._local_folder = opened.local_root

    def _local_root(self) -> str:
        """This machine's folder for the workspace: local slots, built environments."""
        return self._local_folder

    def _own_folders(self) -> list[str]:
        """Folders this workspace writes to; snapshots never include them."""
        return [f for f in (self.artifacts_root, self._local_folder) if "://" not in f]

    @property
    def name(self) -> str:
        if "://" in self.uri:
            return self.uri.rsplit("/", 1)[-1].split("?")[0]
        return os.path.basename(self.uri.rstrip("/")) or self.uri

    def __repr__(self) -> str:
        return f"Workspace(uri={self.uri!r})"

    def _studio_url(self) -> str:
        """The root of this workspace's studio: its server, else the ``runyard studio``
        running on it on this machine, else where ``runyard studio`` starts by default."""
        if self.uri.startswith(("http://", "https://")):
            return self.uri
        try:
            with open(os.path.join(self._local_folder, STUDIO_FILE)) as fh:
                found = json.load(fh)
            url, pid, host = found["url"], found["pid"], found["host"]
        except (OSError, ValueError, KeyError, TypeError):
            return DEFAULT_STUDIO_URL
        import socket

        import psutil

        same_machine = host == socket.gethostname() and isinstance(pid, int)
        if same_machine and isinstance(url, str) and psutil.pid_exists(pid):
            return url
        return DEFAULT_STUDIO_URL

    # -- config -------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        _create: bool = True,
        _artifacts: str | None = None,
    ) -> Workspace:
        """Open the workspace named by the nearest ``.runyard/config.json`` above ``path``.

        ``RUNYARD_URI`` (and ``RUNYARD_ARTIFACTS``) in the environment take precedence.
        """
        env_uri = os.environ.get(ENV_URI)
        config_path, config = _find_config(path, required=not env_uri)
        base = os.path.dirname(os.path.dirname(config_path)) if config_path else os.getcwd()
        uri = env_uri or config.get("uri")
        if not isinstance(uri, str) or not uri:
            raise UserError(
                f'{config_path} has no "uri"; write one with Workspace(uri).write_config()'
            )
        if not env_uri and "://" not in uri and not uri.startswith("sqlite:"):
            uri = os.path.join(base, os.path.expanduser(uri))
        artifacts = _artifacts or os.environ.get(ENV_ARTIFACTS) or config.get("artifacts")
        from_config = not (_artifacts or os.environ.get(ENV_ARTIFACTS))
        if artifacts and from_config and "://" not in artifacts:  # a folder, not s3://
            artifacts = os.path.join(base, os.path.expanduser(artifacts))
        workspace = cls(uri, artifacts, _create=_create)
        if os.environ.get(ENV_MAX_RUNS) is None and "max_concurrent_runs" in config:
            workspace.max_concurrent_runs = _max_concurrent_runs(config["max_concurrent_runs"])
        experiment = config.get("experiment")
        workspace.default_experiment = experiment if isinstance(experiment, str) else None
        workspace.project_path = base
        return workspace

    def write_config(self, path: str | os.PathLike[str] | None = None, **extra: Any) -> str:
        """Write ``<path>/.runyard/config.json`` pointing at this workspace; return its path."""
        base = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
        if os.path.exists(base) and not os.path.isdir(base):
            raise UserError(f"cannot write a config into {base!r}: it is a file, not a folder")
        folder = os.path.join(base, CONFIG_DIR)
        os.makedirs(folder, exist_ok=True)
        from .store import workspace_paths

        config: dict[str, Any] = {"uri": _relative_if_inside(self.uri, base)}
        default_artifacts = workspace_paths(self.uri)[1]
        if self.uri.startswith(("http://", "https://")):  # a server's: it keeps the files
            pass
        elif default_artifacts is None or os.path.abspath(default_artifacts) != self.artifacts_root:
            config["artifacts"] = _relative_if_inside(self.artifacts_root, base)
        config.update({k: v for k, v in extra.items() if v is not None})
        target = os.path.join(folder, CONFIG_FILE)
        with open(target, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=2)
            fh.write("\n")
        return target

    # -- contents -------------------------------------------------------------
    @property
    def experiments(self) -> dict[str, Experiment]:
        """Active experiments by name."""
        from .experiment import Experiment

        return {
            rec.name: Experiment._from_record(self, rec)
            for rec in self._store.list_experiments("ActiveOnly")
        }

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        """The compute targets attached to the workspace, by name (``local`` is not one)."""
        from .compute import ComputeTarget

        return {t.name: t for t in ComputeTarget.list(self)}

    def get_run(self, run_id: str) -> Run:
        """The run with this id, in whichever experiment it is."""
        from ._validation import check_run_id
        from .experiment import Experiment
        from .run import Run

        record = self._store.get_run(check_run_id(run_id))
        experiment = Experiment._from_record(self, self._store.get_experiment(record.experiment_id))
        return Run._from_record(experiment, record)


def _max_concurrent_runs(value: object) -> int:
    """Script runs that may execute at once on this machine (default: the CPU count)."""
    if value is None:
        return os.cpu_count() or 1
    try:
        count = int(str(value))
    except ValueError:
        count = 0
    if count < 1:
        raise UserError(
            f"max_concurrent_runs must be a whole number of at least 1, not {value!r} "
            f"(set in .runyard/config.json or {ENV_MAX_RUNS})"
        )
    return count


def _relative_if_inside(target: str, base: str) -> str:
    if "://" in target or target.startswith("sqlite:"):
        return target
    try:
        rel = os.path.relpath(target, base)
    except ValueError:
        return target
    return target if rel.startswith("..") else rel


def _find_config(
    path: str | os.PathLike[str] | None, required: bool = True
) -> tuple[str | None, dict[str, Any]]:
    start = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
    if os.path.isfile(start):
        return start, _read_config(start)
    searched = []
    current = start
    while True:
        candidate = os.path.join(current, CONFIG_DIR, CONFIG_FILE)
        searched.append(candidate)
        if os.path.isfile(candidate):
            return candidate, _read_config(candidate)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if not required:
        return None, {}
    raise ConfigNotFound(
        f"no workspace configuration found in {start} or its parent folders (looked for "
        f"{', '.join(searched)}); create one with `runyard init` or, in Python, "
        "Workspace('path/to/workspace').write_config(), or set RUNYARD_URI"
    )


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read workspace configuration {path}: {exc}") from None
    if not isinstance(config, dict):
        raise UserError(f'{path} must hold a JSON object such as {{"uri": ".runyard"}}')
    return config
