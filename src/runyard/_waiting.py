"""Run.wait_for_completion: poll the status and stream the run's log as it grows."""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _loans
from .errors import ActivityFailedError, ExperimentExecutionError, UserError
from .records import POST_PROCESSING_STATUSES, TERMINAL_STATUSES

if TYPE_CHECKING:
    from .run import Run

STD_LOG = "user_logs/std_log.txt"
STREAM_POLL = 0.1


class _LogTail:
    """Streams a growing log file to ``out``: every byte, in bounded chunks, decoded safely.

    Each ``pump`` writes what was appended since the last one (at most ``per_poll`` bytes
    while the run goes, so the status is still polled); ``pump(final=True)`` reads to the
    end of the file. Nothing is held in memory beyond one chunk.
    """

    CHUNK = 1 << 20

    def __init__(self, path: str | None, per_poll: int = 16 << 20) -> None:
        self.path = path
        self.offset = 0
        self.per_poll = per_poll
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.announced = False

    def pump(self, out: Any, final: bool = False) -> None:
        if self.path:
            try:
                fh = open(self.path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                fh = None
            if fh is not None:
                with fh:
                    fh.seek(self.offset)
                    budget = self.per_poll
                    while final or budget > 0:
                        block = fh.read(self.CHUNK if final else min(self.CHUNK, budget))
                        if not block:
                            break
                        self.offset += len(block)
                        budget -= len(block)
                        self._emit(out, self.decoder.decode(block))
        if final:
            self._emit(out, self.decoder.decode(b"", final=True))

    def _emit(self, out: Any, text: str) -> None:
        if text and not self.announced:
            self.announced = True
            text = f"Streaming {STD_LOG}\n{'=' * (10 + len(STD_LOG))}\n\n" + text
        _write(out, text)


def wait_for_completion(
    run: Run, show_output: bool = False, wait_post_processing: bool = False,
    raise_on_error: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Block until the run is finished (see Run.wait_for_completion)."""
    if (
        run.id == os.environ.get("RUNYARD_RUN_ID")
        and run._record.heartbeat is not None
        and run._record.status not in TERMINAL_STATUSES
    ):
        raise UserError(
            f"run {run.id} is the run of this script: it cannot finish while the script waits "
            "for it, so the wait would never end. Wait for it from another process, or wait "
            "for child runs instead."
        )
    stop_at = set(TERMINAL_STATUSES)
    if not (wait_post_processing or show_output):
        stop_at.update(POST_PROCESSING_STATUSES)
    out = sys.stdout
    tail = _LogTail(run._artifacts.local_path(run.id, STD_LOG)) if show_output else None
    if show_output:
        out.write(f"RunId: {run.id}\n")
        out.flush()
    try:
        with _lending_slot(run):
            _poll(run, out, tail, stop_at, show_output)
    except KeyboardInterrupt:
        raise ExperimentExecutionError(
            "The output streaming for the run interrupted.\nBut the run is still executing. "
            f"Run {run.id} goes on: watch it again with run.wait_for_completion(), or stop it "
            "with run.cancel()."
        ) from None
    details = run.get_details()
    if tail is not None:
        tail.pump(out, final=True)
        out.write(f"\nExecution Summary\n=================\nRunId: {run.id}\n\n")
        out.flush()
    if details.get("status") == "Failed":
        error = details.get("error")
        text = (
            json.dumps(error, indent=4)
            if error
            else "Detailed error not set on the Run. Please check the logs for details."
        )
        if raise_on_error:
            raise ActivityFailedError(text)
        if show_output:
            out.write(f"Error:\n{text}\n")
            out.flush()
    return details


def _poll(run: Run, out: Any, tail: _LogTail | None, stop_at: set[str], show_output: bool) -> None:
    delay = 0.2
    while True:
        status = run.get_status()
        if tail is not None:
            tail.pump(out)
        if status in stop_at and (status != "CancelRequested" or not show_output):
            break
        if tail is not None:
            time.sleep(STREAM_POLL)
        else:
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)


@contextlib.contextmanager
def _lending_slot(run: Run) -> Iterator[None]:
    """Inside a submitted script, lend its local slot while it waits for a descendant run.

    The script does not execute while it waits, so one of its descendants may run in its
    slot (see ``_loans``); without this, a parent waiting for its children with one slot
    would wait forever.
    """
    me = os.environ.get("RUNYARD_RUN_ID")
    folder = os.environ.get(_loans.FOLDER_VAR)
    if not me or not folder or run._record.heartbeat is None or not _descends(run, me):
        yield
        return
    with _loans.lend(folder, me):
        yield


def _descends(run: Run, ancestor: str) -> bool:
    from .store.base import iter_ancestors

    return ancestor in iter_ancestors(run._store, run._record.parent_id)


def _write(out: Any, text: str) -> None:
    if text:
        out.write(text)
        out.flush()
