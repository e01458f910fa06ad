"""MLflow's REST API 2.0 on runyard's Store: translation only, the same runs on both faces.

``mlflow_app`` is mounted by ``create_app`` at ``/api/2.0`` and ``/ajax-api/2.0``. Tokens
and roles are runyard's (a Bearer token, as the MLflow client sends
``MLFLOW_TRACKING_TOKEN``); docs/mlflow.md maps one face onto the other.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from . import experiments, models, runs  # noqa: F401 - they register their RPCs
from ._rpc import endpoints
from .artifacts import routes as artifact_routes


def mlflow_app(store: Any, artifacts: Any, settings: Any) -> Starlette:
    """The MLflow face as an ASGI app, to mount at ``/api/2.0`` and ``/ajax-api/2.0``."""
    routes = endpoints() + artifact_routes()

    async def not_found(request: Request, exc: Exception) -> Response:
        body = json.dumps(
            {
                "error_code": "ENDPOINT_NOT_FOUND",
                "message": f"no such MLflow endpoint on runyard: {request.method} "
                f"{request.url.path}",
            }
        )
        return Response(body, status_code=404, media_type="application/json")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.state.store = store
    app.state.artifacts = artifacts
    app.state.settings = settings
    return app
