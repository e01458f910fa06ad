"""One MLflow RPC: its fields (query string for GET, a JSON object body otherwise), the
caller's role checked, the handler run in a worker thread, and MLflow's answer: 200 with a
JSON object, or ``{"error_code", "message"}`` with MLflow's HTTP status."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import (
    Conflict,
    Forbidden,
    NotFound,
    RunyardError,
    TooLarge,
    Unauthenticated,
    UserError,
)
from ...store import _json
from ..auth import Principal, _needs

log = logging.getLogger("runyard.server")
_LIST_FIELDS = {"experiment_ids", "order_by", "run_ids", "tags", "metrics", "params"}


@dataclass(frozen=True)
class Call:
    """One MLflow RPC as its handler sees it."""

    store: Any
    artifacts: Any
    who: Principal
    fields: dict[str, Any]
    request: Request

    def field(self, name: str, *aliases: str) -> Any:
        for key in (name, *aliases):
            if self.fields.get(key) not in (None, ""):
                return self.fields[key]
        return None

    def required(self, name: str, *aliases: str) -> Any:
        value = self.field(name, *aliases)
        if value is None:
            raise UserError(f"Missing value for required parameter '{name}'.")
        return value

    def text(self, name: str, *aliases: str, required: bool = True) -> str | None:
        value = self.required(name, *aliases) if required else self.field(name, *aliases)
        if value is not None and not isinstance(value, str):
            raise UserError(f"Invalid value {value!r} for parameter '{name}' supplied: text")
        return value


Handler = Callable[[Call], dict[str, Any]]
ROUTES: list[tuple[str, str, str, Handler]] = []


def rpc(method: str, path: str, role: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``method path`` (below ``/api/2.0``), needing ``role``."""

    def register(handler: Handler) -> Handler:
        ROUTES.append((method, path, role, handler))
        return handler

    return register


def error_of(exc: BaseException) -> tuple[str, int]:
    """MLflow's error code and HTTP status for a runyard error."""
    if isinstance(exc, NotFound):
        return "RESOURCE_DOES_NOT_EXIST", 404
    if isinstance(exc, Unauthenticated):
        return "UNAUTHENTICATED", 401
    if isinstance(exc, Forbidden):
        return "PERMISSION_DENIED", 403
    if isinstance(exc, TooLarge):
        return "RESOURCE_EXHAUSTED", 413
    if isinstance(exc, AlreadyExists):
        return "RESOURCE_ALREADY_EXISTS", 400
    if isinstance(exc, UserError):  # Conflict too: MLflow answers a changed param with 400
        return "INVALID_PARAMETER_VALUE", 400
    if isinstance(exc, RunyardError) and exc.http_status == 503:
        return "TEMPORARILY_UNAVAILABLE", 503
    return "INTERNAL_ERROR", 500


class AlreadyExists(Conflict):
    """MLflow's RESOURCE_ALREADY_EXISTS (an HTTP 400 there)."""


def error_response(exc: BaseException) -> Response:
    code, status = error_of(exc)
    message = str(exc) if isinstance(exc, RunyardError) else f"{type(exc).__name__}"
    body = json.dumps({"error_code": code, "message": message})
    return Response(body, status_code=status, media_type="application/json")


def json_response(content: dict[str, Any]) -> Response:
    return Response(_json.dumps(content), media_type="application/json")


async def _fields(request: Request) -> dict[str, Any]:
    return {**await _sent_fields(request), **request.path_params}


async def _sent_fields(request: Request) -> dict[str, Any]:
    if request.method in ("GET", "DELETE"):
        fields: dict[str, Any] = {}
        for key in request.query_params:
            values = request.query_params.getlist(key)
            fields[key] = values if key in _LIST_FIELDS else values[-1]
        return fields
    body = await request.body()
    if not body.strip():
        return {}
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind not in ("application/json", ""):
        raise UserError(f"a request body is JSON (Content-Type application/json), not {kind}")
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        raise UserError("the request body is not valid JSON") from None
    if not isinstance(fields, dict):
        raise UserError("the request body is a JSON object")
    return fields


def _endpoint(role: str, handler: Handler) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            who = await run_in_threadpool(_needs, request, role)  # before the body is read
            fields = await _fields(request)
            state = request.app.state
            answer = await run_in_threadpool(
                handler, Call(state.store, state.artifacts, who, fields, request)
            )
            return json_response(answer)
        except RunyardError as exc:
            if exc.http_status >= 500:
                log.error("%s %s: %s", request.method, request.url.path, exc)
            return error_response(exc)
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.url.path)
            return error_response(exc)

    return endpoint


def endpoints() -> list[Route]:
    """A route for every registered RPC."""
    return [
        Route(path, _endpoint(role, handler), methods=[method])
        for method, path, role, handler in ROUTES
    ]
