"""Run.wait_for_completion: poll the status and stream the run's log as it grows."""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _liveness, _loans
from .errors import ActivityFailedError, ExperimentExecutionError, UserError
from .records import POST_PROCESSING_STATUSES, TERMINAL_STATUSES

if TYPE_CHECKING:
    from .run import Run

STD_LOG = "user_logs/std_log.txt"


class _LogTail:
    """Writes a run's log to ``out`` as its bytes arrive, decoded safely (a character split
    between two chunks is kept for the next one)."""

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.announced = False

    def write(self, out: Any, data: bytes, final: bool = False) -> None:
        self._emit(out, self.decoder.decode(data, final=final))

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
    tail = _LogTail() if show_output else None
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
        tail.write(out, b"", final=True)
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
    """Follow the run's events (a server streams them; a database is looked at again and
    again) until its status is one of ``stop_at``."""
    if run._record.status in TERMINAL_STATUSES and tail is None:
        return
    events = run._store.run_events(run.id, run._artifacts, STD_LOG if tail else None)
    try:
        for event in events:
            if event.kind == "log" and tail is not None:
                tail.write(out, event.data)
            elif event.kind == "status" and event.run is not None:
                run._record = event.run
                status = event.run.status
                if status in stop_at and (status != "CancelRequested" or not show_output):
                    return
            elif event.kind == "idle" and run._record.heartbeat is not None:
                _liveness.expire_silent_runs(run._store, run._artifacts, run.id)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


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
