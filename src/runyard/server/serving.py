"""``runyard serve``: run the app on uvicorn, in one process or several.

The worker processes each open the workspace themselves; what they need travels in one
environment variable (:data:`ENV_CONFIG`), read by :func:`app_from_environment`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import sys
from dataclasses import asdict
from typing import Any

from ..errors import UserError
from .app import ServerSettings

ENV_CONFIG = "RUNYARD_SERVE_CONFIG"
DEFAULT_PORT = 8600


def is_loopback(host: str) -> bool:
    """Is ``host`` an address only this machine can reach (127.0.0.0/8, ::1, localhost)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_options(host: str, port: int, workers: int, settings: ServerSettings) -> None:
    if not settings.auth and not is_loopback(host):
        raise UserError(
            f"--no-auth is refused on {host}: without tokens anyone who reaches the port is "
            "an admin. Use it only with --host 127.0.0.1 (or ::1), or create tokens instead"
        )
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, not {port}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")


def prepare(uri: str, artifacts: str | None, first_token: bool = True) -> tuple[str, str | None]:
    """Open (and create or migrate) the workspace once, before the workers start; return
    the admin token's secret if this start created it (only with ``first_token``)."""
    from ..store import is_server_uri, open_workspace
    from .auth import ensure_admin_token

    if is_server_uri(uri):
        raise UserError(
            f"runyard serve serves a database workspace (a folder or postgresql:// URI), not "
            f"another server ({uri})"
        )
    opened = open_workspace(uri, artifacts)
    try:
        return opened.artifacts_root, ensure_admin_token(opened.store) if first_token else None
    finally:
        opened.store.close()


def serve(
    uri: str,
    artifacts: str | None,
    host: str,
    port: int,
    workers: int,
    settings: ServerSettings,
    echo: Any = print,
) -> None:
    """Serve ``uri`` until Ctrl-C or SIGTERM; in-flight requests finish first."""
    import uvicorn

    from ._protocol import NO_DELAY_PROTOCOL

    check_options(host, port, workers, settings)
    # runyard studio signs its browser in with its own secret: it makes no token
    root, admin_secret = prepare(uri, artifacts, first_token=settings.studio_secret is None)
    if port == 0:
        port = _free_port(host)
    shown = f"[{host}]" if ":" in host else host
    url = settings.public_url or f"http://{shown}:{port}"
    settings = ServerSettings(**{**asdict(settings), "public_url": url})
    os.environ[ENV_CONFIG] = json.dumps(
        {"uri": uri, "artifacts": root, "settings": asdict(settings)}
    )
    if not settings.auth:
        echo(
            "warning: --no-auth: this server answers every request as an admin, without a "
            "token; anyone on this machine can read and change every run"
        )
    if admin_secret is not None:
        echo(
            "An admin token was created for this workspace. It is shown only now; keep it:\n"
            f"  {admin_secret}\n"
            f"Sign in with: runyard login {url}"
        )
    echo(f"runyard serves {_shown(uri)} at {url} ({workers} worker(s)); Ctrl-C stops it")
    # uvicorn drains, then raises the SIGTERM it caught again: a drained stop exits 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "runyard.server.serving:app_from_environment",
        factory=True,
        http=NO_DELAY_PROTOCOL,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=30,
        log_level="warning",
        access_log=False,
    )


def studio(
    uri: str, artifacts: str | None, port: int, open_browser: bool, echo: Any = print
) -> None:
    """Serve the studio of a database workspace on 127.0.0.1 until Ctrl-C, signed in by a
    one-time link (printed, and opened in the browser unless ``open_browser`` is False).

    ``port`` taken by another program: a free one is used instead. While it runs, the
    workspace's ``studio.json`` names its URL, so ``run.get_portal_url()`` gives its pages.
    """
    import secrets
    import threading

    from ..store import open_workspace
    from ..workspace import STUDIO_FILE

    host = "127.0.0.1"
    if port == 0 or not _port_free(host, port):
        if port:
            echo(f"port {port} is taken; the studio uses a free one")
        port = _free_port(host)
    code = secrets.token_urlsafe(24)
    settings = ServerSettings(studio_secret=secrets.token_urlsafe(32), login_code=code)
    url = f"http://{host}:{port}"
    opened = open_workspace(uri, artifacts, create=False)
    local = opened.local_root
    opened.store.close()
    marker = os.path.join(local, STUDIO_FILE)
    staged = f"{marker}.{os.getpid()}.tmp"
    with open(staged, "w") as fh:
        json.dump({"url": url, "pid": os.getpid(), "host": socket.gethostname()}, fh)
    os.replace(staged, marker)
    link = f"{url}/login?code={code}"
    echo(f"The runyard studio of {_shown(uri)}:\n  {link}\n(the link signs one browser in, once)")
    if open_browser:
        threading.Timer(1.0, _open, (link,)).start()
    try:
        serve(uri, artifacts, host, port, 1, settings, echo=lambda *_: None)
    finally:
        try:
            with open(marker) as fh:
                if json.load(fh).get("pid") == os.getpid():
                    os.unlink(marker)
        except (OSError, ValueError):
            pass


def _open(link: str) -> None:
    import webbrowser

    webbrowser.open(link)


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def app_from_environment() -> Any:
    """The app of one worker, from :data:`ENV_CONFIG` (set by :func:`serve`)."""
    from ..store import open_workspace
    from .app import create_app

    config = json.loads(os.environ[ENV_CONFIG])
    if config["settings"].get("studio_secret"):  # one process: no child needs the secret
        os.environ.pop(ENV_CONFIG, None)  # (the browser runyard studio opens inherits env)
    opened = open_workspace(config["uri"], config["artifacts"])
    return create_app(opened.store, opened.artifacts, ServerSettings(**config["settings"]))


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _shown(uri: str) -> str:
    from ..store import _without_password

    return _without_password(uri)
