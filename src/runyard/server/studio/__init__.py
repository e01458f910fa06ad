"""The studio: pages that draw runs from the same /api/v1 the SDK uses.

The pages are one HTML shell and static scripts; they hold no data and need no sign-in.
Everything they show comes from the API, which needs a token: the studio keeps it in an
HttpOnly, SameSite=Strict session cookie, set by ``POST /api/v1/session`` (a token typed
on the sign-in page) or by ``runyard studio``'s one-time link (``/login?code=…``). A change
made with that cookie must also carry the ``X-Runyard-CSRF`` header (see ``auth``).

Charts come from plotly.js as the ``plotly`` package ships it, served from
``/vendor/plotly.min.js``; nothing is fetched from the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import importlib.util
import os
import secrets
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import RedirectResponse, Response

from ... import __version__
from ...errors import NotFound, UserError
from ..app import JSON
from ..auth import (
    Principal,
    authenticate,
    csrf_cookie,
    principal_of,
    reader,
    session_cookie,
)

STATIC = os.path.join(os.path.dirname(__file__), "static")
PLOTLY = "plotly.min.js"  # as the plotly package ships it, in its package_data
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(include_in_schema=False)
_CODES = threading.Lock()
session_router = APIRouter(tags=["session"])


class _Files:
    """The studio's static files, read once and kept gzipped beside (plotly.js is 4.8 MB,
    1.4 MB gzipped)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[bytes, bytes, str]] = {}

    def paths(self) -> dict[str, str]:
        found = {
            name: os.path.join(STATIC, name)
            for name in os.listdir(STATIC)
            if os.path.splitext(name)[1] in _TYPES
        }
        spec = importlib.util.find_spec("plotly")
        if spec is not None and spec.submodule_search_locations:
            plotly = os.path.join(spec.submodule_search_locations[0], "package_data")
            found[PLOTLY] = os.path.join(plotly, PLOTLY)
        return found

    def get(self, name: str) -> tuple[bytes, bytes, str]:
        with self._lock:
            if name not in self._cache:
                path = self.paths().get(name)
                if path is None or not os.path.isfile(path):
                    if name == PLOTLY:
                        raise NotFound(
                            "the studio's charts need the plotly package on the server: "
                            "pip install 'runyard[server]'"
                        )
                    raise NotFound(f"the studio has no file {name!r}")
                with open(path, "rb") as fh:
                    data = fh.read()
                etag = hashlib.sha256(data).hexdigest()[:16]
                self._cache[name] = (data, gzip.compress(data, 6), etag)
            return self._cache[name]


FILES = _Files()


def _file(request: Request, name: str, forever: bool = False) -> Response:
    """A static file, gzipped when the browser takes it; ``forever``: its URL names its
    content (``?v=`` its ETag), so the browser keeps it without asking again."""
    data, packed, etag = FILES.get(name)
    headers = {
        # revalidated by ETag, so an upgrade shows at once; a file named by content is kept
        "Cache-Control": "public, max-age=31536000, immutable" if forever else "no-cache",
        "ETag": f'"{etag}"',
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    media = _TYPES[os.path.splitext(name)[1]]
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(packed, media_type=media, headers=headers)
    return Response(data, media_type=media, headers=headers)


@router.get("/static/{name}")
def static_file(name: str, request: Request) -> Response:
    if name == "index.html":
        raise NotFound("the studio has no file 'index.html'")
    return _file(request, name)


@router.get("/vendor/plotly.min.js")
def plotly_js(request: Request, v: str | None = None) -> Response:
    return _file(request, PLOTLY, forever=v is not None and v == FILES.get(PLOTLY)[2])


def _shell() -> Response:
    data, _, _ = FILES.get("index.html")
    try:
        plotly = f"/vendor/plotly.min.js?v={FILES.get(PLOTLY)[2]}"
    except NotFound:  # drawn without charts; the page says what is missing
        plotly = "/vendor/plotly.min.js"
    page = data.replace(b"{{version}}", __version__.encode()).replace(
        b"{{plotly}}", plotly.encode()
    )
    return Response(
        page,
        media_type="text/html; charset=utf-8",
        headers={**PAGE_HEADERS, "Cache-Control": "no-store"},
    )


@router.get("/")
@router.get("/experiments/{experiment_id}")
@router.get("/runs/{run_id}")
@router.get("/compare")
def page() -> Response:
    """Every page is the same shell; its script draws the page that the path names."""
    return _shell()


@router.get("/login")
def login(request: Request, code: str | None = None, next: str = "/") -> Response:
    """The sign-in page; with ``code`` (``runyard studio``'s one-time link) it signs this
    browser in and goes on to ``next``."""
    if code is None:
        return _shell()
    settings = request.app.state.settings
    expected = settings.login_code
    with _CODES:  # two requests with the code at once: one signs in
        used: set[str] = request.app.state.__dict__.setdefault("used_login_codes", set())
        good = (
            bool(settings.studio_secret and expected)
            and expected not in used
            and hmac.compare_digest(code.encode(), expected.encode())
        )
        if good:
            used.add(expected)
    if not good:
        return RedirectResponse("/login?link=used", status_code=303, headers=PAGE_HEADERS)
    target = next if next.startswith("/") and not next.startswith(("//", "/\\")) else "/"
    response = RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
    _sign_in(request, response, settings.studio_secret)
    return response


class SessionIn(BaseModel):
    token: str = Field(min_length=1, max_length=4096)


class Session(BaseModel):
    name: str
    role: str


@session_router.post("/session", response_model=Session)
def start_session(body: SessionIn, request: Request) -> Any:
    """Sign this browser in with a token: the answer sets the studio's session cookie
    (HttpOnly, SameSite=Strict) and its CSRF cookie. A wrong token is a 401."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise UserError('send the token as JSON: {"token": "..."}')
    settings = request.app.state.settings
    if not settings.auth:
        who = authenticate(request)
    else:
        who = principal_of(request.app.state.store, settings, body.token.strip())
    response = JSON({"name": who.name, "role": who.role})
    if settings.auth:
        _sign_in(request, response, body.token.strip())
    return response


@session_router.delete("/session", status_code=204)
def end_session(request: Request, who: Annotated[Principal, Depends(reader)]) -> Response:
    """Sign this browser out: its session cookie is cleared."""
    response = Response(status_code=204)
    for name in (session_cookie(request), csrf_cookie(request)):
        response.delete_cookie(name, path="/", samesite="strict")
    return response


def _sign_in(request: Request, response: Response, secret: str) -> None:
    secure = request.url.scheme == "https" or (
        request.app.state.settings.public_url or ""
    ).startswith("https://")
    response.set_cookie(
        session_cookie(request), secret, path="/", httponly=True, samesite="strict",
        secure=secure,
    )  # fmt: skip
    response.set_cookie(
        csrf_cookie(request), secrets.token_urlsafe(32), path="/", samesite="strict",
        secure=secure,
    )  # fmt: skip
