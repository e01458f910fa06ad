"""``runyard sync``: send the metric batches that processes left in their spool files."""

from __future__ import annotations

from typing import Any

import click

from ._common import Session, command


def register(cli: click.Group) -> None:
    @command(cli, "sync", "runyard sync --workspace http://runyard.example:8600")
    def sync(session: Session) -> dict[str, Any]:
        """Send metric batches spooled while the server could not be reached.

        A process that logs to a server keeps what the server did not take in a spool file
        on this machine; one that ended before the server came back leaves it there. Each
        batch is sent once, in order; the server skips a batch it already has.
        """
        from ..store._outbox import default_spool_dir, replay_spools

        workspace = session.workspace()
        store = workspace._store
        send = getattr(store, "_send_batch", None)
        if send is None:
            return {"workspace": workspace.uri, "files": 0, "batches": 0, "note": "nothing to "
                    "sync: this workspace is a database, written directly"}  # fmt: skip
        folder = default_spool_dir(workspace.uri)
        files, batches = replay_spools(folder, send, log=lambda m: click.echo(m, err=True))
        return {"workspace": workspace.uri, "spool": folder, "files": files, "batches": batches}
