"""``runyard serve``: the tracking server for a team."""

from __future__ import annotations

from typing import Any

import click

from ._common import global_options

MB = 1 << 20


@click.command("serve", epilog="Example: runyard serve --workspace postgresql://db/runs "
               "--artifacts /srv/runyard --host 0.0.0.0 --workers 4")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8600, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--workers", default=1, show_default=True, type=int,
    help="Server processes; several need a postgresql:// (or SQLite) workspace they share.",
)  # fmt: skip
@click.option(
    "--no-auth", is_flag=True,
    help="Answer every request as an admin, without tokens (only on a loopback address).",
)  # fmt: skip
@click.option("--public-url", metavar="URL", help="The URL clients use (behind a proxy).")
@click.option("--max-json-mb", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--max-batch-mb", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--max-artifact-mb", default=65536, show_default=True, type=click.IntRange(min=1))
@global_options
def serve_command(
    host: str,
    port: int,
    workers: int,
    no_auth: bool,
    public_url: str | None,
    max_json_mb: int,
    max_batch_mb: int,
    max_artifact_mb: int,
    workspace_uri: str | None,
    artifacts: str | None,
    debug: bool,
    **_: Any,
) -> None:
    """Serve a workspace over HTTP: the /api/v1 API, tokens and roles.

    Prints the URL, and on the first start an admin token (shown once). Ctrl-C or SIGTERM
    lets in-flight requests finish, then stops.
    """
    _needs_server_extra("runyard serve")
    from ..server.app import ServerSettings
    from ..server.serving import serve

    uri, artifacts = _workspace(workspace_uri, artifacts, debug)
    settings = ServerSettings(
        auth=not no_auth,
        max_json_bytes=max_json_mb * MB,
        max_batch_bytes=max_batch_mb * MB,
        max_artifact_bytes=max_artifact_mb * MB,
        public_url=public_url.rstrip("/") if public_url else None,
    )
    serve(uri, artifacts, host, port, workers, settings, echo=click.echo)


@click.command("studio", epilog="Example: runyard studio --port 8700 --no-browser")
@click.option("--port", default=8600, show_default=True, type=click.IntRange(0, 65535),
              help="Port on 127.0.0.1 (a free one if it is taken).")  # fmt: skip
@click.option("--no-browser", is_flag=True, help="Print the sign-in link; open no browser.")
@global_options
def studio_command(
    port: int,
    no_browser: bool,
    workspace_uri: str | None,
    artifacts: str | None,
    debug: bool,
    **_: Any,
) -> None:
    """Open the studio: this workspace's experiments, runs, charts and logs in a browser.

    A local workspace is served on 127.0.0.1 until Ctrl-C, and a one-time sign-in link is
    printed and opened. A server workspace's studio is the server's own pages.
    """
    from ..store import is_server_uri

    uri, artifacts = _workspace(workspace_uri, artifacts, debug)
    if is_server_uri(uri):
        click.echo(f"The studio of this workspace is its server's: {uri}/ (sign in with a token)")
        if not no_browser:
            import webbrowser

            webbrowser.open(f"{uri}/")
        return
    _needs_server_extra("runyard studio")
    from ..server.serving import studio

    studio(uri, artifacts, port, not no_browser, echo=click.echo)


def _needs_server_extra(command: str) -> None:
    import importlib.util

    missing = [
        name
        for name in ("fastapi", "uvicorn", "plotly", "numpy")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise click.UsageError(
            f"{command} needs the server extra ({', '.join(missing)} missing): "
            "pip install 'runyard[server]'"
        )


def _workspace(
    workspace_uri: str | None, artifacts: str | None, debug: bool
) -> tuple[str, str | None]:
    """The workspace a command serves: its options, else the project's, as every command
    finds it."""
    from ..workspace import Workspace
    from ._common import state

    top = click.get_current_context().find_root().params
    state.debug = bool(debug or top.get("debug"))
    uri = workspace_uri or top.get("workspace_uri")
    artifacts = artifacts or top.get("artifacts")
    if uri is None:
        ws = Workspace.from_config(".", _create=False, _artifacts=artifacts)
        uri, artifacts = ws.uri, ws.artifacts_root
        ws._store.close()
    return uri, artifacts


def register(cli: click.Group) -> None:
    cli.add_command(serve_command)
    cli.add_command(studio_command)
