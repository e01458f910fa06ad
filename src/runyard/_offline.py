"""OfflineRun: what ``Run.get_context()`` returns outside a submitted run.

It records nothing; it prints what it would have recorded, so a training script runs
unchanged on a laptop, in a test, or as a submitted run.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from ._run_metrics import plain_value


class OfflineRun:
    """A stand-in run that prints each call instead of storing it.

    >>> run = OfflineRun()
    >>> run.log("loss", 0.5)
    Attempted to log scalar metric loss:
    0.5
    """

    def __init__(self, run_id: str | None = None) -> None:
        self.id = run_id or f"OfflineRun_{uuid.uuid4()}"
        self.display_name: str | None = None
        self.description: str | None = None

    def __repr__(self) -> str:
        return f"OfflineRun(Id: {self.id})"

    def _attempt(self, kind: str, name: str, value: Any) -> None:
        print(f"Attempted to log {kind} metric {name}:\n{value}")

    def log(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("scalar", name, plain_value(value, f"value of metric {name!r}"))

    def log_list(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("list", name, value)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._attempt("row", name, kwargs)

    def log_table(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("table", name, value)

    def log_image(
        self, name: str, path: str | None = None, plot: Any = None, description: str = ""
    ) -> None:
        self._attempt("image", name, path if path is not None else plot)

    def log_confusion_matrix(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("confusion_matrix", name, value)

    def log_accuracy_table(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("accuracy_table", name, value)

    def log_residuals(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("residual", name, value)

    def log_predictions(self, name: str, value: Any, description: str = "") -> None:
        self._attempt("predictions", name, value)

    def set_tags(self, tags: dict[str, Any]) -> None:
        print(f"Attempted to set tags {tags}")

    def tag(self, key: str, value: Any = None) -> None:
        print(f"Attempted to add tag {key} with value {value}")

    def add_properties(self, properties: dict[str, Any]) -> None:
        print(f"Attempted to add properties {properties}")

    def upload_file(self, name: str, path_or_stream: Any) -> None:
        print(f"Attempted to track file {name} at {path_or_stream}")

    def upload_files(self, names: list[str], paths: list[str], **kwargs: Any) -> None:
        print(f"Attempted to track files {names} at {paths}")

    def upload_folder(self, name: str, path: str) -> None:
        print(f"Attempted to track folder {name} at {path}")

    def flush(self, timeout_seconds: int = 300) -> None:
        print(f"Attempted to flush run with id {self.id}")

    def complete(self, _set_status: bool = True) -> None:
        pass

    def cancel(self) -> None:
        pass

    def fail(
        self, error_details: Any = None, error_code: str | None = None, _set_status: bool = True
    ) -> None:
        print(f"Run failed with error code {error_code}:\n{error_details}")

    def child_run(
        self, name: str | None = None, run_id: str | None = None, outputs: str | None = None
    ) -> OfflineRun:
        return OfflineRun(f"{self.id}.{name or uuid.uuid4()}")

    def get_file_names(self) -> list[str]:
        return []

    def __enter__(self) -> OfflineRun:
        print(f"[START] Run {self.id} context")
        return self

    def __exit__(self, *exc: Any) -> Literal[False]:
        print(f"[STOP] Run {self.id} context")
        return False
