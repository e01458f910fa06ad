"""The keeper: why no process of a run outlives its supervisor.

    python -I -S keeper.py LIFELINE_FD STATUS_FD SUPERVISOR_PID GRACE -- COMMAND...

(SUPERVISOR_PID 0: the keeper's parent, a shield between it and the supervisor; see
``process_tree.SHIELD``.)

The supervisor starts every command of a run (the script, pip) through a keeper. The keeper
becomes a child subreaper (Linux), so every descendant that loses its parent is re-parented
to it rather than to init, starts COMMAND, reports ``started <pid>`` (or ``error <errno>
<message>``) on STATUS_FD, and waits:

- when COMMAND ends, it stops whatever COMMAND left behind and exits with COMMAND's status
  (a death by signal is reproduced);
- when the supervisor goes away (SIGKILL, the OOM killer: the LIFELINE_FD pipe, whose other
  end only the supervisor holds, reaches end of file; or the parent-death signal arrives;
  or its parent changes), or when it receives SIGTERM, SIGINT or SIGHUP, it stops its
  whole tree: SIGTERM to every descendant, SIGKILL to what is left after GRACE seconds.

It is run as a file with the standard library only, so it starts in milliseconds whatever
the environment of the command.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_TREE_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_RESET_IN_CHILD = (signal.SIGPIPE, signal.SIGXFSZ, *_TREE_SIGNALS, signal.SIGCHLD)


def _prctl(option: int, value: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init (Linux)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def descendants(root: int) -> list[int]:
    """The live (not zombie) descendants of ``root``, parents before children."""
    children: dict[int, list[int]] = {}
    alive: set[int] = set()
    try:
        names = os.listdir("/proc")
    except OSError:  # pragma: no cover - not Linux
        return _descendants_psutil(root)
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        if fields[0] not in (b"Z", b"X"):
            alive.add(pid)
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            if is_supervisor(pid):  # another run's, with its own keeper: independent
                continue
            found.append(pid)
            todo.append(pid)
    return [pid for pid in found if pid in alive]


SUPERVISOR_MODULE = b"runyard.execution.supervisor"


def is_supervisor(pid: int) -> bool:
    """Is ``pid`` the supervisor of a run (one that a script submitted, a child run)?

    Runs are independent of the script that submitted them, as in the original: a parent
    may end while its children go on, so a tree being stopped leaves them (and what they
    supervise) alone.
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return False
    return SUPERVISOR_MODULE in args[1:4] and b"-m" in args[1:3]


def _descendants_psutil(root: int) -> list[int]:  # pragma: no cover - not Linux
    try:
        import psutil

        return [p.pid for p in psutil.Process(root).children(recursive=True)]
    except Exception:
        return []


class Keeper:
    def __init__(self, lifeline: int, status: int, parent: int, grace: float) -> None:
        self.lifeline = lifeline
        self.status_fd = status
        self.parent = parent
        self.grace = grace
        self.child = 0
        self.child_status: int | None = None
        self.stop_reason: str | None = None

    def reap(self) -> None:
        """Collect every exited child; remember the command's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child_status = status

    def stop_tree(self) -> None:
        """SIGTERM every descendant, SIGKILL what is left after the grace period."""
        me = os.getpid()
        self._signal_all(descendants(me), signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            self.reap()
            if not descendants(me):
                break
            time.sleep(0.02)
        for _ in range(200):  # processes may fork while they are being killed
            left = descendants(me)
            if not left:
                break
            self._signal_all(left, signal.SIGKILL)
            time.sleep(0.01)
            self.reap()
        self.reap()

    @staticmethod
    def _signal_all(pids: list[int], signum: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    def run(self, command: list[str]) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        received: list[int] = []
        for signum in _TREE_SIGNALS:
            signal.signal(signum, lambda number, _frame: received.append(number))
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through wake_w
        become_subreaper()
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != self.parent:
            self._report("error 0 the supervisor ended before the command started")
            return 1
        try:
            self.child = os.posix_spawnp(command[0], command, os.environ, setsigdef=_RESET_IN_CHILD)
        except OSError as exc:
            self._report(f"error {exc.errno or 0} {exc.strerror or exc}")
            return 127
        self._report(f"started {self.child}")
        while self.child_status is None:
            self.reap()
            if self.child_status is not None:
                break
            if received:
                self.stop_reason = f"signal {received[0]}"
                break
            if os.getppid() != self.parent:
                self.stop_reason = "the supervisor is gone"
                break
            ready, _, _ = select.select([self.lifeline, wake_r], [], [], 1.0)
            if self.lifeline in ready and not os.read(self.lifeline, 4096):
                self.stop_reason = "the supervisor is gone"
                break
            if wake_r in ready:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
        self.stop_tree()
        while self.child_status is None:  # it was stopped with the rest of the tree
            try:
                _, self.child_status = os.waitpid(self.child, 0)
            except ChildProcessError:  # pragma: no cover - reaped by stop_tree
                self.child_status = 0
        return os.waitstatus_to_exitcode(self.child_status)

    def _report(self, text: str) -> None:
        try:
            os.write(self.status_fd, text.encode() + b"\n")
            os.close(self.status_fd)
        except OSError:
            pass


def _exit_like(code: int) -> None:
    """Exit with ``code``; a negative code is death by that signal, reproduced."""
    if code < 0:
        signum = -code
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ImportError, ValueError, OSError):  # pragma: no cover
            pass
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
        time.sleep(0.1)
        os._exit(128 + signum)
    os._exit(code)


def main(argv: list[str]) -> None:
    if len(argv) < 6 or argv[4] != "--":
        sys.stderr.write("usage: keeper.py LIFELINE_FD STATUS_FD SUPERVISOR_PID GRACE -- CMD\n")
        os._exit(2)
    lifeline, status = int(argv[0]), int(argv[1])
    parent = int(argv[2]) or os.getppid()  # 0: whoever started it (a shield)
    for fd in (lifeline, status):
        os.set_inheritable(fd, False)
    keeper = Keeper(lifeline, status, parent, float(argv[3]))
    _exit_like(keeper.run(argv[5:]))


if __name__ == "__main__":
    main(sys.argv[1:])
