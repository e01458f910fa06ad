"""A process forked at any moment can log, flush and finish runs of its own.

Each lock runyard holds (the database's, a metric buffer's, the flusher's, the open-run
registry's) is held by another thread of the parent while it forks: the child must not
inherit it taken. A fork waits for a database write in progress in another thread (a
SQLite connection forked mid-transaction would block every connection of the child).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from runyard import Experiment, _logging_buffer, _process


def _wait_child(pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung")


def _child_work(ws) -> None:
    try:
        run = Experiment(ws, "forked").start_logging(snapshot_directory=None, outputs=False)
        run.log("child", 1.0)
        run.flush()
        assert run.get_metrics() == {"child": 1.0}
        run.complete()
        os._exit(0)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)


@pytest.mark.parametrize("lock", ["database", "buffer", "flusher", "registry"])
def test_fork_while_another_thread_holds_a_lock(ws, lock):
    parent = Experiment(ws, "parent").start_logging(snapshot_directory=None, outputs=False)
    parent.log("x", 1.0)
    held = {
        # a server's workspace: the lock of its HTTP client
        "database": lambda: (
            (getattr(ws._store, "db", None) and ws._store.db._lock) or ws._store._http._lock
        ),
        "buffer": lambda: parent._buffer_obj._lock,
        "flusher": lambda: _logging_buffer._flusher._guard,
        "registry": lambda: _process._guard,
    }[lock]()
    taken, release = threading.Event(), threading.Event()

    def hold():  # like a write that takes a while; a fork waits for a database write
        with held:
            taken.set()
            release.wait(0.5)

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        pid = os.fork()
        if pid == 0:
            _child_work(ws)
    finally:
        release.set()
        thread.join()
    assert _wait_child(pid) == 0
    parent.complete()
    assert parent.get_metrics() == {"x": 1.0}


def test_many_forks_while_logging(local_ws):
    run = Experiment(local_ws, "busy").start_logging(snapshot_directory=None, outputs=False)
    stop = threading.Event()

    def log():
        i = 0
        while not stop.is_set():
            run.log("busy", float(i))
            i += 1
            if i % 500 == 0:
                run.flush()

    thread = threading.Thread(target=log)
    thread.start()
    try:
        pids = []
        for _ in range(40):
            pid = os.fork()
            if pid == 0:
                _child_work(local_ws)
            pids.append(pid)
            time.sleep(0.005)
        codes = [_wait_child(pid) for pid in pids]
    finally:
        stop.set()
        thread.join()
    assert codes == [0] * 40
    run.complete()
    assert len(list(Experiment(local_ws, "forked").get_runs())) == 40
