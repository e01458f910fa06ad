"""The tokens of runyard servers on this machine: ``RUNYARD_TOKEN`` or a user-only file.

``runyard login URL`` keeps the token in ``$XDG_CONFIG_HOME/runyard/credentials.json``
(``~/.config/runyard/credentials.json``), one entry per server URL, written atomically with
mode 0600 in a 0700 folder. Like ssh with a private key, a credentials file that other
users could read (or that another user owns) is refused, with the command that fixes it.

    >>> from runyard._credentials import token_for
    >>> token_for("http://gpu-box:8600")  # doctest: +SKIP
    'ry_...'
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from .errors import UserError

ENV_TOKEN = "RUNYARD_TOKEN"
FILE_NAME = "credentials.json"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def credentials_path() -> str:
    """Where saved tokens are kept (``$XDG_CONFIG_HOME`` or ``~/.config``, then runyard/)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "runyard", FILE_NAME)


def server_key(url: str) -> str:
    """A server URL in one spelling: ``scheme://host:port[/path]``, lower-case scheme and
    host, the default port filled in, no trailing slash, no query.

        >>> server_key("HTTP://Gpu-Box/")
        'http://gpu-box:80'
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UserError(f"{url!r} is not a runyard server URL; give one such as http://host:8600")
    if parts.username or parts.password:
        raise UserError(f"a server URL must not hold a user or password: {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise UserError(f"the port of {url!r} is not a number from 1 to 65535") from None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"


def token_for(url: str) -> str | None:
    """The token to send to the server at ``url``: ``RUNYARD_TOKEN``, else the one saved
    by ``runyard login``, else None."""
    env = os.environ.get(ENV_TOKEN, "").strip()
    if env:
        return env
    entry = _read().get(server_key(url))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def save_token(url: str, token: str) -> str:
    """Keep ``token`` for the server at ``url`` (replacing any); return the file's path."""
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token.strip()):
        raise UserError("a token is one word without spaces; copy it again")
    key = server_key(url)
    with _locked() as servers:
        servers[key] = {"token": token.strip(), "saved": time.time()}
    return credentials_path()


def forget_token(url: str) -> bool:
    """Remove the saved token of the server at ``url``; False if there was none."""
    key = server_key(url)
    if not os.path.exists(credentials_path()):
        return False
    with _locked() as servers:
        return servers.pop(key, None) is not None


def _check_private(path: str, st: os.stat_result) -> None:
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UserError(
            f"{path} belongs to another user; runyard will not use tokens from it: remove it "
            "and run runyard login again"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UserError(
            f"{path} can be read by other users (mode {stat.S_IMODE(st.st_mode):o}); its "
            f"tokens may have leaked. Run chmod 600 {path} (and consider revoking them)"
        )


def _read() -> dict[str, Any]:
    path = credentials_path()
    try:
        with open(path, encoding="utf-8") as fh:
            _check_private(path, os.fstat(fh.fileno()))
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot read the runyard credentials file {path}: {exc}; fix it or remove it and "
            "run runyard login again"
        ) from None
    servers = data.get("servers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise UserError(
            f'{path} is not a runyard credentials file (no "servers" object); remove it and '
            "run runyard login again"
        )
    return servers


@contextlib.contextmanager
def _locked() -> Iterator[dict[str, Any]]:
    """The saved servers, to change in place; written back atomically (0600) at the end,
    under a lock so that two logins at once do not lose one another's token."""
    path = credentials_path()
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    with open(os.path.join(folder, ".credentials.lock"), "a") as lock:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        servers = _read()
        yield servers
        fd, temp = tempfile.mkstemp(prefix=".credentials.", dir=folder)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "servers": servers}, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
