"""The stock MLflow client against a real runyard server (in a thread, auth on).

The client is the ``mlflow-client`` extra; without it these tests skip with a visible
reason, unless ``RUNYARD_REQUIRE_MLFLOW=1`` (CI), where its absence fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REQUIRE = os.environ.get("RUNYARD_REQUIRE_MLFLOW") == "1"


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        problem = (
            f"the stock MLflow client is not installed ({exc}): pip install '.[mlflow-client]'"
        )
        if REQUIRE:
            pytest.fail(f"MLflow is required here (RUNYARD_REQUIRE_MLFLOW=1): {problem}")
        pytest.skip(problem)
    return mlflow


@dataclass
class Tracking:
    """A served workspace and the MLflow client pointed at it."""

    url: str
    store: Any  # the server's own store
    root: str  # its artifact folder
    tokens: dict[str, str]  # role -> secret
    mlflow: Any

    def client(self) -> Any:
        return self.mlflow.MlflowClient(self.url)

    def workspace(self, monkeypatch: pytest.MonkeyPatch) -> Any:
        """The runyard SDK's view of the same workspace (a contributor token)."""
        from runyard import Workspace

        monkeypatch.setenv("RUNYARD_TOKEN", self.tokens["contributor"])
        return Workspace(self.url)


@pytest.fixture
def tracking(ws_uri, tmp_path, monkeypatch) -> Iterator[Tracking]:
    mlflow = _mlflow()
    from tests.live_server import serve_workspace

    uri, artifacts = ws_uri
    root = artifacts or str(tmp_path / "artifacts")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a 5xx fails the test at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    with serve_workspace(uri, root, auth=True) as (url, store):
        tokens = {
            role: store.create_token(f"t-{role}", role)[1]
            for role in ("reader", "contributor", "admin")
        }
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tokens["contributor"])
        mlflow.set_tracking_uri(url)
        try:
            yield Tracking(url, store, root, tokens, mlflow)
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()
            try:
                mlflow.flush_async_logging()
            except Exception:
                pass
            mlflow.set_tracking_uri(None)
            import mlflow.tracking.fluent as fluent

            fluent._active_experiment_id = None
