"""``runyard token …``: create, list and revoke the access tokens of a runyard server.

On a local or PostgreSQL workspace (the operator, on the server's machine) the commands
write the workspace database directly; on an http(s):// workspace they call the server
(which needs an admin token).
"""

from __future__ import annotations

import os
import re
from typing import Any, Protocol

import click

from ._common import Session, command, path_option
from ._output import local_time

HTTP = ("http://", "https://")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


@click.group("token", epilog="Example: runyard token create --name ci-bot --role contributor")
def group() -> None:
    """Create, list and revoke the tokens of a runyard server."""


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``3600s`` or ``2w`` in seconds; anything else a UserError.

    >>> parse_duration("12h")
    43200.0
    """
    from ..errors import UserError

    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0.0
    if seconds <= 0:
        raise UserError(
            f"--expires {text!r} is not a duration: give a positive number and a unit, such "
            "as 30d, 12h, 90m or 3600s (s, m, h, d, w)"
        )
    return seconds


class TokenAdmin(Protocol):
    """What the token commands need, from a database or from a server."""

    def create(self, name: str, role: str, expires_in: float | None) -> dict[str, Any]: ...
    def list(self) -> list[dict[str, Any]]: ...
    def revoke(self, name: str) -> dict[str, Any]: ...


def _plain(record: Any, now: float) -> dict[str, Any]:
    """A token as the commands show it; its state by ``now``, the database's clock."""
    from ..run import format_time

    out = {name: getattr(record, name) for name in record.__dataclass_fields__}
    out["state"] = record.state(now)
    return _times(out, format_time)


def _times(token: dict[str, Any], format_time: Any) -> dict[str, Any]:
    for key in ("created", "expires", "revoked", "last_used"):
        if isinstance(token.get(key), int | float):
            token[key] = format_time(token[key])
    return token


class _LocalTokens:
    """Tokens written straight into the workspace database."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def create(self, name: str, role: str, expires_in: float | None) -> dict[str, Any]:
        # expiry counts by the database's clock, as every server decides it
        now = self.store.database_now()
        expires = None if expires_in is None else now + expires_in
        record, secret = self.store.create_token(
            name, role, expires=expires, created_by=f"{_user()} (runyard token create)"
        )
        return {**_plain(record, now), "token": secret}

    def list(self) -> list[dict[str, Any]]:
        now = self.store.database_now()
        return [_plain(r, now) for r in self.store.list_tokens()]

    def revoke(self, name: str) -> dict[str, Any]:
        return _plain(self.store.revoke_token(name), self.store.database_now())


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown user"


class _RemoteTokens:
    """Tokens of a server, through its /api/v1/tokens routes (an admin token needed)."""

    def __init__(self, http: Any) -> None:
        self.http = http

    def _out(self, token: dict[str, Any]) -> dict[str, Any]:
        from ..run import format_time

        return _times(token, format_time)

    def create(self, name: str, role: str, expires_in: float | None) -> dict[str, Any]:
        body = {"name": name, "role": role, "expires_in_seconds": expires_in}
        return self._out(self.http.json("POST", "/api/v1/tokens", json=body, retry_seconds=0))

    def list(self) -> list[dict[str, Any]]:
        return [self._out(t) for t in self.http.json("GET", "/api/v1/tokens")]

    def revoke(self, name: str) -> dict[str, Any]:
        from urllib.parse import quote

        return self._out(self.http.json("DELETE", f"/api/v1/tokens/{quote(name, safe='')}"))


def server_client(url: str) -> Any:
    """An HTTP client for the server at ``url`` with the token saved for it (or none)."""
    from .._credentials import token_for
    from ..store._http import HttpClient

    return HttpClient(url, token_for(url))


def _workspace_uri(session: Session) -> str | None:
    """The workspace URI without opening it: --workspace, RUNYARD_URI, or the config."""
    if session.workspace_uri:
        return session.workspace_uri
    from ..workspace import ENV_URI, _find_config

    if os.environ.get(ENV_URI):
        return os.environ[ENV_URI]
    _, config = _find_config(session.path, required=False)
    uri = config.get("uri")
    return uri if isinstance(uri, str) else None


def token_store(session: Session) -> TokenAdmin:
    """The tokens of the command's workspace: its database, or its server over HTTP."""
    uri = _workspace_uri(session)
    if uri is not None and uri.startswith(HTTP):
        return _RemoteTokens(server_client(uri))
    store = session.workspace()._store
    http = getattr(store, "_http", None)
    if http is not None:
        return _RemoteTokens(http)
    return _LocalTokens(store)


def token_rows(result: Any) -> list[dict[str, Any]]:
    items = result if isinstance(result, list) else [result]
    rows = []
    for t in items:
        row = {
            "Name": t.get("name", ""),
            "Role": t.get("role", ""),
            "State": t.get("state", ""),
            "Run": t.get("scope_run_id") or "",
            "Created": local_time(t.get("created")),
            "Expires": local_time(t.get("expires")) or "never",
            "Last used": local_time(t.get("last_used")),
        }
        if "token" in t:
            row["Token"] = t["token"]
        rows.append(row)
    return rows


@command(group, "create", "runyard token create --name ci-bot --role contributor --expires 30d",
         table=token_rows)  # fmt: skip
@path_option
@click.option("--name", required=True, help="Token name (shown as who submitted a run).")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["reader", "contributor", "admin"]),
    help="reader: read everything; contributor: also create and change runs; admin: also "
    "tokens, archive and reactivate.",
)
@click.option(
    "--expires", metavar="DURATION", help="Lifetime such as 30d, 12h, 90m (default: never)."
)
def create(session: Session, name: str, role: str, expires: str | None) -> dict[str, Any]:
    """Create a token and print its secret: it is shown this once, and stored only hashed."""
    expires_in = None if expires is None else parse_duration(expires)
    return token_store(session).create(name, role, expires_in)


@command(group, "list", "runyard token list -o table", table=token_rows)
@path_option
def list_tokens(session: Session) -> list[dict[str, Any]]:
    """List the tokens (active, expired and revoked), never their secrets."""
    return token_store(session).list()


@command(group, "revoke", "runyard token revoke ci-bot", table=token_rows)
@path_option
@click.argument("name")
def revoke(session: Session, name: str) -> dict[str, Any]:
    """Revoke a token (and the run tokens made with it); the server refuses its next request."""
    return token_store(session).revoke(name)
