"""runyard records as MLflow's JSON entities, and MLflow's values as runyard's.

One run history, two faces: params are properties, MLflow tags are tags except the three
that are run fields (``mlflow.runName`` the display name, ``mlflow.parentRunId`` the
parent, ``mlflow.note.content`` the description), metrics are scalar series, artifacts are
run files, and the statuses map both ways (``STATUS_TO_MLFLOW``, ``STATUS_FROM_MLFLOW``).
Times are milliseconds on MLflow's side, seconds on runyard's.
"""

from __future__ import annotations

import math
from typing import Any

from ...errors import UserError
from ...records import ExperimentRecord, RunRecord, SeriesSummary

DEFAULT_EXPERIMENT = "Default"  # MLflow's experiment "0"
RUN_NAME, PARENT, NOTE = "mlflow.runName", "mlflow.parentRunId", "mlflow.note.content"
FIELD_TAGS = {RUN_NAME: "display_name", NOTE: "description"}

STATUS_FROM_MLFLOW = {
    "RUNNING": "Running",
    "SCHEDULED": "Queued",
    "FINISHED": "Completed",
    "FAILED": "Failed",
    "KILLED": "Canceled",
}
STATUS_TO_MLFLOW = {
    "NotStarted": "SCHEDULED",
    "Queued": "SCHEDULED",
    "Preparing": "SCHEDULED",
    "Starting": "SCHEDULED",
    "Provisioning": "SCHEDULED",
    "Running": "RUNNING",
    "NotResponding": "RUNNING",
    "Finalizing": "RUNNING",
    "CancelRequested": "RUNNING",
    "Completed": "FINISHED",
    "Failed": "FAILED",
    "Canceled": "KILLED",
}
# MLflow's numeric enum values, which a client may send instead of names
_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_FLOAT_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


MS_SLACK = 1e-3  # of a millisecond: x / 1000 * 1000 may come back as x - 1e-7


def ms(seconds: float | None) -> int | None:
    """Whole milliseconds, rounded down (a search on times counts on it)."""
    return None if seconds is None else math.floor(seconds * 1000 + MS_SLACK)


def mlflow_status(value: Any) -> str:
    """An MLflow status name (or enum number) checked; INVALID_PARAMETER_VALUE otherwise."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise UserError(f"Invalid value {value!r} for parameter 'status' supplied")
    if isinstance(value, int):
        value = _STATUS_NUMBERS.get(value, value)
    if value not in STATUS_FROM_MLFLOW:
        raise UserError(
            f"Invalid value {value!r} for parameter 'status' supplied: it is one of "
            f"{', '.join(STATUS_FROM_MLFLOW)}"
        )
    return str(value)


def statuses_of(mlflow_name: str) -> tuple[str, ...]:
    """The runyard statuses that show as the MLflow status ``mlflow_name``."""
    return tuple(s for s, m in STATUS_TO_MLFLOW.items() if m == mlflow_name)


def number(value: Any, name: str) -> float:
    """A metric value as MLflow sends it: a JSON number, or "NaN", "Infinity", "-Infinity"."""
    if isinstance(value, str) and value in _FLOAT_NAMES:
        return _FLOAT_NAMES[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"Invalid value {value!r} for parameter '{name}' supplied: a number")
    try:
        return float(value)
    except OverflowError:
        raise UserError(f"Invalid value for parameter '{name}' supplied: out of range") from None


def integer(value: Any, name: str, default: int | None = None) -> int:
    """An int64 as MLflow's client writes it: a JSON number or a decimal string."""
    if value is None or value == "":
        if default is None:
            raise UserError(f"Missing value for required parameter '{name}'.")
        return default
    if isinstance(value, bool):
        value = "bool"
    try:
        result = int(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(
            f"Invalid value {value!r} for parameter '{name}' supplied: an integer"
        ) from None
    if not -(2**63) <= result < 2**63:
        raise UserError(f"Invalid value {value!r} for parameter '{name}' supplied: int64")
    return result


MAX_TIMESTAMP = 2**53  # ms: kept as float seconds, a timestamp must come back the same


def json_number(value: float) -> float | str:
    """A float for MLflow's JSON: non-finite values as the strings protobuf uses."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def experiment_json(record: ExperimentRecord, shown_id: str) -> dict[str, Any]:
    created = ms(record.created)
    return {
        "experiment_id": shown_id,
        "name": record.name,
        "artifact_location": f"mlflow-artifacts:/{shown_id}",
        "lifecycle_stage": "deleted" if record.archived is not None else "active",
        "creation_time": created,
        "last_update_time": ms(record.archived) if record.archived is not None else created,
        "tags": [{"key": k, "value": v or ""} for k, v in record.tags.items()],
    }


def run_info(record: RunRecord, experiment_id: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": record.id,
        "run_uuid": record.id,
        "run_name": record.display_name or record.name or record.id,
        "experiment_id": experiment_id,
        "user_id": record.submitted_by or "",
        "status": STATUS_TO_MLFLOW.get(record.status, "RUNNING"),
        "start_time": ms(record.start if record.start is not None else record.created),
        "artifact_uri": f"mlflow-artifacts:/{experiment_id}/{record.id}/artifacts",
        "lifecycle_stage": "deleted" if record.deleted is not None else "active",
    }
    if record.end is not None:
        info["end_time"] = ms(record.end)
    return info


def run_tags(record: RunRecord) -> dict[str, str]:
    """The run's tags as MLflow shows them: with the three that are run fields."""
    tags = {k: v or "" for k, v in record.tags.items()}
    tags[RUN_NAME] = record.display_name or record.name or record.id
    if record.parent_id is not None:
        tags[PARENT] = record.parent_id
    if record.description:
        tags[NOTE] = record.description
    return tags


def latest_metric(summary: SeriesSummary) -> dict[str, Any] | None:
    """The series' last point as an MLflow Metric; None for a series that is not numbers."""
    value = summary.last
    if summary.kind != "scalar" or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return {
        "key": summary.name,
        "value": json_number(float(value)),
        "timestamp": ms(summary.last_time) or 0,
        "step": summary.last_step or 0,
    }


def run_json(record: RunRecord, experiment_id: str, series: list[SeriesSummary]) -> dict[str, Any]:
    metrics = [m for m in map(latest_metric, series) if m is not None]
    return {
        "info": run_info(record, experiment_id),
        "data": {
            "metrics": metrics,
            "params": [{"key": k, "value": v} for k, v in record.properties.items()],
            "tags": [{"key": k, "value": v} for k, v in run_tags(record).items()],
        },
        "inputs": {},
        "outputs": {},
    }
