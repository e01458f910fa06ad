"""Who is calling: bearer tokens, roles, and the run scope of a script's token.

Every route but the health check depends on one of :func:`reader`, :func:`contributor` or
:func:`admin`; each reads ``Authorization: Bearer <token>``, looks the token up (one indexed
SELECT per request, no cache: a revoked token is refused on its next request, by every
server of the database) and checks its role. Expiry is decided by the database's clock,
not the server's, so servers whose clocks differ agree. Missing or unknown tokens are 401
(:class:`Unauthenticated`), a role too low or a run outside a token's scope 403
(:class:`Forbidden`).

    >>> @router.get("/runs/{run_id}")                                     # doctest: +SKIP
    ... def get_run(run_id: str, who: Annotated[Principal, Depends(reader)]): ...
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ..errors import Conflict, Forbidden, RunyardError, Unauthenticated
from ..records import TERMINAL_STATUSES
from ..store.base import iter_ancestors
from ..store.sql.tokens import ROLES, TOUCH_INTERVAL

log = logging.getLogger("runyard.server")
ADMIN_TOKEN_NAME = "admin"
SCOPE_GRACE_SECONDS = 3600.0  # a run's token works this long after the run ended
NO_TOKEN = "this runyard server needs a token: set RUNYARD_TOKEN or run runyard login URL"
_STATE_KEY = "runyard_principal"


@dataclass(frozen=True)
class Principal:
    """The caller of a request: the token's name, its role, and the run it is limited to.

    >>> Principal("ci-bot", "contributor", None).allows("reader")
    True
    """

    name: str
    role: str
    scope_run_id: str | None = None

    def allows(self, role: str) -> bool:
        """Does this principal's role include ``role`` (reader < contributor < admin)?"""
        return ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Principal("anonymous", "admin", None)
# who signs in through the one-time link of ``runyard studio`` (the workspace's owner)
STUDIO = Principal("studio", "admin", None)
SESSION_COOKIE = "runyard_session"
CSRF_COOKIE = "runyard_csrf"
CSRF_HEADER = "X-Runyard-CSRF"


def _secret(request: Request) -> str:
    """The token of ``request``: its ``Authorization: Bearer`` header, else its studio
    session cookie (then a change needs the CSRF header too)."""
    header = request.headers.get("authorization")
    if not header:
        cookie = request.cookies.get(session_cookie(request))
        if cookie:
            _check_csrf(request)
            return cookie
        raise Unauthenticated(NO_TOKEN)
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthenticated(
            "the Authorization header must be 'Bearer <token>'; set RUNYARD_TOKEN or run "
            "runyard login URL"
        )
    return secret


def session_cookie(request: Request) -> str:
    """The name of the studio's session cookie. Browsers share cookies between the ports
    of one host, so the name carries the port: two servers on one machine keep apart."""
    port = request.url.port
    return f"{SESSION_COOKIE}_{port}" if port else SESSION_COOKIE


def csrf_cookie(request: Request) -> str:
    port = request.url.port
    return f"{CSRF_COOKIE}_{port}" if port else CSRF_COOKIE


def _check_csrf(request: Request) -> None:
    """A request signed in by cookie that changes something must echo the CSRF cookie in
    the ``X-Runyard-CSRF`` header: a page of another site can send the cookie (were it
    not SameSite) but can neither read it nor set that header."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("origin")
    if origin is not None and not _own_origin(request, origin):
        # another origin (another port of this host shares its cookies) never changes runs
        raise Forbidden(
            f"a change signed in by the studio's cookie came from {origin}, not from this "
            "server's pages (behind a proxy, set runyard serve --public-url)"
        )
    sent = request.headers.get(CSRF_HEADER, "").encode()
    expected = request.cookies.get(csrf_cookie(request), "").encode()
    if not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden(
            f"this change comes with the studio's session cookie but without a matching "
            f"{CSRF_HEADER} header; reload the studio page, or send a token in the "
            "Authorization header instead"
        )


def _own_origin(request: Request, origin: str) -> bool:
    """Is ``origin`` this server's: the host the request was sent to, or its public URL?"""
    public = request.app.state.settings.public_url or ""
    mine = {request.headers.get("host", ""), public.split("://", 1)[-1].split("/", 1)[0]}
    return origin.split("://", 1)[-1] in mine - {""}


def authenticate(request: Request) -> Principal:
    """The principal of ``request`` (once per request), or Unauthenticated."""
    cached = getattr(request.state, _STATE_KEY, None)
    if isinstance(cached, Principal):
        return cached
    settings = request.app.state.settings
    if not settings.auth:
        principal = ANONYMOUS
    else:
        principal = principal_of(request.app.state.store, settings, _secret(request))
    setattr(request.state, _STATE_KEY, principal)
    return principal


def still_allowed(request: Request) -> bool:
    """Does the token of ``request`` still work (not revoked, not expired, its run's scope
    alive)? For a long answer, such as an event stream, that outlives its token's checks.
    """
    settings = request.app.state.settings
    if not settings.auth:
        return True
    try:
        principal_of(request.app.state.store, settings, _secret(request))
    except Unauthenticated:
        return False
    return True


def principal_of(store: Any, settings: Any, secret: str) -> Principal:
    studio = getattr(settings, "studio_secret", None)
    if studio and hmac.compare_digest(secret.encode(), studio.encode()):
        return STUDIO
    return _check_token(store, secret)


def _check_token(store: Any, secret: str) -> Principal:
    # expiry goes by the database's clock: every server of one database decides alike
    found = store.find_token_now(secret)
    if found is None:
        raise Unauthenticated(
            "this token is not known to this runyard server (mistyped, or deleted): check "
            "RUNYARD_TOKEN, or run runyard login URL again"
        )
    record, now = found
    state = record.state(now)
    if state == "revoked":
        raise Unauthenticated(
            f"token {record.name!r} was revoked; ask an admin of the server for a new one"
        )
    if state == "expired":
        raise Unauthenticated(
            f"token {record.name!r} expired at {_when(record.expires)}; ask an admin of the "
            "server for a new one"
        )
    if record.scope_run_id is not None:
        _check_scope_alive(store, record.name, record.scope_run_id, now)
    if record.last_used is None or now - record.last_used > TOUCH_INTERVAL:
        try:
            store.touch_token(record.name, now)
        except RunyardError as exc:  # bookkeeping only: never fail the request for it
            log.warning("could not note the use of token %r: %s", record.name, exc)
    return Principal(record.name, record.role, record.scope_run_id)


def _check_scope_alive(store: Any, name: str, run_id: str, now: float) -> None:
    from ..errors import NotFound

    try:
        run = store.get_run(run_id)
    except NotFound:
        raise Unauthenticated(f"token {name!r} expired: its run {run_id} no longer exists")
    if run.status in TERMINAL_STATUSES:
        ended = run.end if run.end is not None else run.created
        if now > ended + SCOPE_GRACE_SECONDS:
            raise Unauthenticated(
                f"token {name!r} expired: its run {run_id} ended ({run.status}) at "
                f"{_when(ended)}, more than an hour ago"
            )


def _when(t: float | None) -> str:
    if t is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _needs(request: Request, role: str) -> Principal:
    principal = authenticate(request)
    if not principal.allows(role):
        raise Forbidden(
            f"token {principal.name!r} has role {principal.role}; this request needs {role}"
        )
    return principal


def reader(request: Request) -> Principal:
    """Dependency: any valid token (every role can read)."""
    return _needs(request, "reader")


def contributor(request: Request) -> Principal:
    """Dependency: a contributor or admin token."""
    return _needs(request, "contributor")


def admin(request: Request) -> Principal:
    """Dependency: an admin token."""
    return _needs(request, "admin")


def require_run(principal: Principal, store: Any, run_id: str | None) -> None:
    """Refuse (Forbidden) a change to ``run_id`` by a run's token outside its run tree.

    A token without a scope passes. For run creation, pass the new run's parent id (a run
    token may create runs only as descendants of its run; ``None``, a top-level run, is
    refused to it).

        >>> require_run(who, store, body.parent_id)  # doctest: +SKIP
    """
    scope = principal.scope_run_id
    if scope is None or run_id == scope:
        return
    if run_id is None:
        raise Forbidden(
            f"token {principal.name!r} belongs to run {scope}; it may create runs only "
            "inside that run's tree, not top-level runs"
        )
    run = store.get_run(run_id)
    if run.root_id == scope or scope in iter_ancestors(store, run.parent_id):
        return
    raise Forbidden(
        f"token {principal.name!r} belongs to run {scope}; it may change only that run and "
        f"its descendants, not run {run_id}"
    )


def ensure_admin_token(store: Any) -> str | None:
    """On a workspace without any token, create the admin token ``admin`` and return its
    secret (to print once); otherwise None. Of several servers starting at once on one
    database exactly one creates it (the others get None).

        >>> secret = ensure_admin_token(store)  # doctest: +SKIP
    """
    if store.count_tokens():
        return None
    try:
        _, secret = store.create_token(ADMIN_TOKEN_NAME, "admin", created_by="runyard serve")
    except Conflict:
        return None
    return str(secret)
