"""``create_app``: the tracking server's ASGI app, one more consumer of the Store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import RunyardError, TooLarge
from ..store import _json
from .auth import Principal, reader

if TYPE_CHECKING:
    from ..artifacts.base import ArtifactStore
    from ..store.base import Store

log = logging.getLogger("runyard.server")
MB = 1 << 20


@dataclass(frozen=True)
class ServerSettings:
    """How a server behaves; ``runyard serve`` fills it from its options.

    ``auth=False`` answers every request as an admin: only for a server on a loopback
    address. The limits bound request bodies: a larger one is refused with 413.
    ``runyard studio`` sets ``studio_secret`` and ``login_code``: opening ``/login?code=``
    once signs a browser in as the workspace's owner (an admin).
    """

    auth: bool = True
    max_json_bytes: int = 16 * MB
    max_batch_bytes: int = 256 * MB
    max_artifact_bytes: int = 64 * 1024 * MB
    public_url: str | None = None
    # runyard studio: the session secret its one-time link signs in with, and that link's code
    studio_secret: str | None = None
    login_code: str | None = None


class JSON(JSONResponse):
    """JSON with non-finite floats tagged (see ``runyard.store._json``). A JSONResponse,
    so that the OpenAPI schema describes each route's answer by its response model."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _json.dumps(content)


def error_response(code: str, message: str, status: int) -> Response:
    return JSON({"error": {"code": code, "message": message}}, status_code=status)


def create_app(store: Store, artifacts: ArtifactStore, settings: ServerSettings) -> FastAPI:
    """The server's ASGI app over ``store`` and ``artifacts``.

    >>> from runyard.server import create_app, ServerSettings   # doctest: +SKIP
    >>> app = create_app(store, artifacts, ServerSettings(auth=False))  # doctest: +SKIP
    """
    from .api import computes, events, experiments, files, metrics, runs, series, tokens
    from .api.schemas import ErrorBody

    app = FastAPI(
        title="runyard",
        version=__version__,
        openapi_url=None,  # served below, to token holders only
        docs_url=None,  # its page loads scripts from a CDN: not for an offline tool
        redoc_url=None,
        default_response_class=JSON,
    )
    # the server's own database path or URI is none of its clients' business
    store.label = settings.public_url or "this server's workspace"  # type: ignore[attr-defined]
    app.state.store = store
    app.state.artifacts = artifacts
    app.state.settings = settings

    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": text}
        for status, text in (
            (400, "Bad request: the message says what was wrong"),
            (401, "No valid token"),
            (403, "The token's role does not allow this"),
            (404, "Not found"),
            (409, "Conflicts with what is stored"),
            (413, "Body over a limit"),
            (503, "The store cannot be reached"),
        )
    }
    for module in (experiments, runs, metrics, series, files, events, tokens, computes):
        app.include_router(module.router, prefix="/api/v1", responses=errors)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(who: Annotated[Principal, Depends(reader)]) -> Response:
        """The OpenAPI schema of this API (any valid token)."""
        return JSON(app.openapi())

    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness for load balancers; needs no token."""
        return {"status": "ok", "version": __version__}

    @app.exception_handler(RunyardError)
    async def runyard_error(request: Request, exc: RunyardError) -> Response:
        if exc.http_status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(exc.code, str(exc), exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return error_response("UserError", _validation_message(exc), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if isinstance(exc.__cause__, RunyardError):  # raised while FastAPI read the body
            return await runyard_error(request, exc.__cause__)
        code = {404: "NotFound", 405: "MethodNotAllowed", 413: "TooLarge"}.get(
            exc.status_code, "UserError" if exc.status_code < 500 else "StoreError"
        )
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        return error_response(code, message, exc.status_code)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(
            "InternalError", f"the server failed on this request ({type(exc).__name__})", 500
        )

    from . import studio

    app.include_router(studio.session_router, prefix="/api/v1", responses=errors)
    app.include_router(studio.router)

    from .mlflow import mlflow_app

    mlflow = mlflow_app(store, artifacts, settings)  # MLflow's REST API on the same store
    app.mount("/api/2.0", mlflow)
    app.mount("/ajax-api/2.0", mlflow)
    _without_422(app)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(Utf8Target)
    return app


def _without_422(app: FastAPI) -> None:
    """The OpenAPI schema without FastAPI's 422 answers: an invalid request is a 400 here
    (documented with the other errors), never a 422."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


class Utf8Target:
    """Refuse (400) a request whose path or query string does not percent-decode to UTF-8:
    the app would see U+FFFD in place of what was sent, and act on another name."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope.get("path", "").encode()
            try:
                unquote_to_bytes(raw).decode("utf-8")
                unquote_to_bytes(scope.get("query_string", b"")).decode("utf-8")
            except UnicodeDecodeError:
                message = (
                    "the request path or query is not valid UTF-8 once percent-decoded (a "
                    "lone surrogate or a stray byte); fix the name's text"
                )
                await error_response("UserError", message, 400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse a request body over its limit with 413, before or while it arrives.

    Metric batches, artifact uploads and JSON bodies each have their own limit.
    """

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    def limit_for(self, method: str, path: str) -> tuple[int, str]:
        s = self.settings
        uploads = ("/api/v1/snap", "/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/")
        if method in ("PUT", "POST") and ("/files/" in path or path.startswith(uploads)):
            return s.max_artifact_bytes, "an artifact"
        if method == "POST" and path.endswith("/metrics"):
            return s.max_batch_bytes, "a metric batch"
        return s.max_json_bytes, "a request body"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit, what = self.limit_for(scope["method"], scope["path"])
        message = (
            f"{what} may be at most {limit} bytes; this server's limit is set with "
            "runyard serve's --max-*-mb options"
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    response = error_response("UserError", "invalid Content-Length", 400)
                    await response(scope, receive, send)
                    return
                if declared > limit:
                    await error_response("TooLarge", message, 413)(scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message_in = await receive()
            if message_in["type"] == "http.request":
                seen += len(message_in.get("body", b""))
                if seen > limit:
                    raise TooLarge(message)
            return message_in

        await self.app(scope, counted, send)
