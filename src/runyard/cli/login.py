"""``runyard login URL`` / ``runyard logout URL``: keep or forget a server's token."""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any
from urllib.parse import urlsplit

import click

from ._common import Session, command

LOGIN_CHECK_SECONDS = 10.0


def _read_token(token: str | None) -> str:
    from ..errors import UserError

    if token is None:
        stdin = sys.stdin
        if stdin is not None and stdin.isatty():
            token = click.prompt("Token", hide_input=True, err=True)
        else:
            token = stdin.readline() if stdin is not None else ""
    token = (token or "").strip()
    if not token:
        raise UserError(
            "no token given: pass --token TOKEN, type it when asked, or pipe it on stdin "
            "(an admin creates one with runyard token create)"
        )
    return token


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return host is not None
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(root: click.Group) -> None:
    @command(root, "login", "runyard login http://gpu-box:8600")
    @click.argument("url")
    @click.option(
        "--token", metavar="TOKEN",
        help="The token (default: asked for without echo, or read from stdin).",
    )  # fmt: skip
    def login(session: Session, url: str, token: str | None) -> dict[str, Any]:
        """Check a token against a runyard server and keep it for that server's URL.

        The token is kept in ~/.config/runyard/credentials.json (mode 0600);
        RUNYARD_TOKEN, when set, is used instead of it.
        """
        from .._credentials import ENV_TOKEN, save_token, server_key
        from ..store._http import HttpClient

        key = server_key(url)
        secret = _read_token(token)
        if key.startswith("http://") and not _is_loopback(urlsplit(key).hostname):
            click.echo(
                f"warning: {key} is plain http: the token crosses the network unencrypted; "
                "put the server behind https unless this network is trusted",
                err=True,
            )
        client = HttpClient(key, secret, retry_seconds=LOGIN_CHECK_SECONDS)
        try:
            who = client.json("GET", "/api/v1/whoami")
        finally:
            client.close()
        path = save_token(key, secret)
        if os.environ.get(ENV_TOKEN):
            click.echo(
                f"warning: {ENV_TOKEN} is set, and is used instead of the token saved here",
                err=True,
            )
        return {"server": key, "name": who.get("name"), "role": who.get("role"),
                "credentials": path}  # fmt: skip

    @command(root, "logout", "runyard logout http://gpu-box:8600")
    @click.argument("url")
    def logout(session: Session, url: str) -> dict[str, Any]:
        """Forget the token kept for a runyard server."""
        from .._credentials import forget_token, server_key

        return {"server": server_key(url), "forgotten": forget_token(url)}
