"""runyard: a self-hosted run history for machine learning.

    >>> from runyard import Workspace, Experiment, Run
    >>> ws = Workspace("./runs")                                  # doctest: +SKIP
    >>> with Experiment(ws, "demo").start_logging() as run:       # doctest: +SKIP
    ...     run.log("loss", 0.1)

Importing this package stays light: the database drivers, matplotlib and numpy load
only when a workspace or a call needs them.
"""

import sys

from .__about__ import __version__
from ._offline import OfflineRun
from .compute import ComputeTarget
from .errors import (
    ActivityFailedError,
    Conflict,
    ExperimentExecutionError,
    NotFound,
    RunEnvironmentError,
    RunyardError,
    SnapshotError,
    UserError,
)
from .execution import (
    Environment,
    MpiConfiguration,
    PyTorchConfiguration,
    RunConfiguration,
    ScriptRunConfig,
)
from .experiment import Experiment
from .run import Run
from .workspace import Workspace

if "IPython" in sys.modules:  # in a notebook, lists of runs are drawn as tables
    from .notebook import register_list_html

    register_list_html()

__all__ = [
    "ActivityFailedError",
    "ComputeTarget",
    "Conflict",
    "Environment",
    "Experiment",
    "ExperimentExecutionError",
    "MpiConfiguration",
    "NotFound",
    "OfflineRun",
    "PyTorchConfiguration",
    "Run",
    "RunConfiguration",
    "RunEnvironmentError",
    "RunyardError",
    "ScriptRunConfig",
    "SnapshotError",
    "UserError",
    "Workspace",
    "__version__",
]
