"""Script runs: configurations, environments, and the supervisor that runs them."""

from .distributed import MpiConfiguration, PyTorchConfiguration
from .environment import Environment, PythonSection
from .run_configuration import HistoryConfiguration, RunConfiguration
from .script_run_config import ScriptRunConfig

__all__ = [
    "Environment",
    "HistoryConfiguration",
    "MpiConfiguration",
    "PyTorchConfiguration",
    "PythonSection",
    "RunConfiguration",
    "ScriptRunConfig",
]
