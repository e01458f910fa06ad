"""Start a script so that all of its processes can be found and stopped."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Any

import psutil

_PR_SET_CHILD_SUBREAPER = 36


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not Linux
        return None


_LIBC = _libc()


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init (Linux)."""
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


KEEPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keeper.py")
_lifelines: list[int] = []  # write ends of the keepers' lifelines: open while we live


# A process between this one and the keeper, for hosts that are killed with their children
# (a Ray worker): the shield dies with the host, and the keeper, seeing its parent gone,
# still stops the whole tree in order. It passes the keeper's exit status on unchanged.
SHIELD = """
import os, signal, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
for fd in sys.argv[5:7]:  # the keeper's lifeline and status pipe: its own, not ours
    os.close(int(fd))
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
os._exit(code & 255)
"""


def start(
    argv: list[str],
    cwd: str | None,
    env: dict[str, str] | None,
    grace: float = 1.0,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.PIPE,
    shield: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` under a keeper (see keeper.py): it and everything it starts end when
    it ends, when this process asks (SIGTERM), or when this process dies in any way.

    The returned process is the keeper (or its shield, see ``SHIELD``); its exit status is
    the command's. Raises OSError when the command cannot be started.
    """
    lifeline_r, lifeline_w = os.pipe()
    status_r, status_w = os.pipe()
    parent = "0" if shield else str(os.getpid())  # 0: the keeper's parent when it starts
    fds = [str(lifeline_r), str(status_w), parent]
    command = [sys.executable, "-I", "-S", KEEPER, *fds, repr(grace), "--", *argv]
    if shield:
        command = [sys.executable, "-I", "-S", "-c", SHIELD, *command]
    try:
        keeper = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            pass_fds=(lifeline_r, status_w),
        )
    except BaseException:
        os.close(lifeline_w)
        os.close(status_r)
        raise
    finally:
        os.close(lifeline_r)
        os.close(status_w)
    _lifelines.append(lifeline_w)
    with os.fdopen(status_r, "rb") as fh:
        report = fh.read().decode("utf-8", "replace").strip()
    if report.startswith("started "):
        return keeper
    keeper.wait()
    if report.startswith("error "):
        _, number, message = [*report.split(" ", 2), ""][:3]
        raise OSError(int(number) or None, message or "cannot start")
    raise OSError(None, f"runyard's keeper process ended at once (exit code {keeper.returncode})")


def descendants() -> list[psutil.Process]:
    """This process's descendants, except the supervisors of other runs and their trees
    (child runs a script submitted: runs are independent of their parent's processes)."""
    from .keeper import is_supervisor

    found: list[psutil.Process] = []
    todo = [psutil.Process(os.getpid())]
    while todo:
        try:
            children = todo.pop().children()
        except psutil.Error:
            continue
        for child in children:
            if not is_supervisor(child.pid):
                found.append(child)
                todo.append(child)
    return found


def stop_all(grace_seconds: float) -> None:
    """SIGTERM every descendant of this process, then SIGKILL what is left after the grace."""
    procs = descendants()
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_seconds)
    for _ in range(5):  # processes may have forked while we waited
        alive = [p for p in {*alive, *descendants()} if _running(p)]
        if not alive:
            break
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=1)
    reap_zombies()


def alive_descendants() -> list[psutil.Process]:
    """This process's descendants that still run (not zombies)."""
    return [p for p in descendants() if _running(p)]


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap_zombies(keep: int | None = None) -> None:
    """Collect exited orphans re-parented to us (but not ``keep``, which Popen waits for)."""
    for proc in descendants():
        if proc.pid == keep:
            continue
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            pass
