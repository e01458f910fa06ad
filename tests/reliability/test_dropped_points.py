"""Points that can never be stored are reported, never hidden by a later good write.

Two handles of one run (or two processes) may log one name with two kinds; the store then
refuses the second kind's points. The background flush drops them with a warning; the
run must not end Completed as if everything had been stored.
"""

from __future__ import annotations

import warnings

import pytest

from runyard import Experiment
from runyard._logging_buffer import flush_all
from runyard.errors import Conflict


def test_points_dropped_by_a_background_flush_fail_complete(ws):
    first = Experiment(ws, "dropped").start_logging(snapshot_directory=None, outputs=False)
    second = ws.get_run(first.id)
    first.log("x", 1.0)
    second.log_list("x", [1.0, 2.0])  # each handle still believes it may use the name
    first.flush()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        flush_all(second.id, raise_errors=False)  # the flusher thread: drops x, warns
    second.log("y", 1.0)
    flush_all(second.id, raise_errors=False)  # a later write that succeeds
    with pytest.raises(Conflict, match="'x'"):
        second.complete()
    assert second.get_status() == "Failed"
    assert second.get_metrics() == {"x": 1.0, "y": 1.0}


def test_points_the_exit_flush_cannot_store_are_reported_on_stderr(tmp_path):
    """A script run's points are written by the flush at interpreter exit; when that write
    fails, the loss is said on stderr (it was silent)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        from runyard import Experiment, Workspace
        ws = Workspace({str(tmp_path / "ws")!r})
        run = Experiment(ws, "exit").start_logging(snapshot_directory=None, outputs=False)
        run.complete()
        handle = ws.get_run(run.id)  # like Run.get_context() in a script: not finished here
        handle.log("loss", 1.0)
        handle.log("loss", 2.0)
        handle._store.db.connection().execute("PRAGMA query_only = ON")  # writes now fail
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "2 metric points of run" in done.stderr
    assert "could not be stored" in done.stderr
