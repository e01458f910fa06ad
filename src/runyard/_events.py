"""Following a run: its status changes and the growth of its log, as RunEvents.

:func:`follow` holds the logic; whoever drives it does the waiting on each ``idle`` event
(``time.sleep`` in the SDK, ``asyncio.sleep`` in the server's event stream), so the same
steps serve a local workspace and a server's server-sent events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from .errors import NotFound
from .records import TERMINAL_STATUSES, RunEvent

if TYPE_CHECKING:
    from .artifacts.base import ArtifactStore
    from .store.base import Store

CHUNK = 1 << 20
IDLE = RunEvent("idle")


def follow(
    store: Store,
    artifacts: ArtifactStore,
    run_id: str,
    log_path: str | None = None,
    offset: int = 0,
    per_poll: int = 16 << 20,
) -> Iterator[RunEvent]:
    """Status changes of ``run_id`` and the bytes of ``log_path`` from ``offset`` on, until
    the run is finished and its log read to the end.

    While the run goes at most ``per_poll`` log bytes come between two looks at the status;
    once it is finished the rest of the log follows before the last status event.
    """
    last_status = None
    while True:
        run = store.get_run(run_id)
        finished = run.status in TERMINAL_STATUSES
        if log_path is not None:
            for data in _read(artifacts, run_id, log_path, offset, None if finished else per_poll):
                yield RunEvent("log", data=data, offset=offset)
                offset += len(data)
        if run.status != last_status:
            last_status = run.status
            yield RunEvent("status", run=run)
        if finished:
            return
        yield IDLE


def _read(
    artifacts: ArtifactStore, run_id: str, path: str, offset: int, budget: int | None
) -> Iterator[bytes]:
    local = artifacts.local_path(run_id, path)
    try:  # a file of this machine, or a stream of the artifact store (an S3 object)
        fh = open(local, "rb") if local is not None else artifacts.open(run_id, path)  # noqa: SIM115
    except (FileNotFoundError, NotFound):
        return
    with fh:
        if fh.seekable():
            fh.seek(offset)
        else:
            _skip(fh, offset)
        yield from blocks(fh, budget)


def blocks(fh: BinaryIO, budget: int | None = None) -> Iterator[bytes]:
    """``fh``'s bytes from where it stands, at most ``budget`` of them, in blocks."""
    while budget is None or budget > 0:
        block = fh.read(CHUNK if budget is None else min(CHUNK, budget))
        if not block:
            return
        if budget is not None:
            budget -= len(block)
        yield block


def _skip(fh: BinaryIO, count: int) -> None:
    while count > 0:
        block = fh.read(min(CHUNK, count))
        if not block:
            return
        count -= len(block)
