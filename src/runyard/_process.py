"""What happens to this process's runs when it ends: exit, exception, SIGTERM.

Runs started in this process (``start_logging``, ``child_run``, ``create_children``)
are tracked until they finish. At interpreter exit each one still open is flushed and
finished: Completed after a normal exit, Failed after an uncaught exception or SIGTERM.
"""

from __future__ import annotations

import atexit
import io
import os
import signal
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .run import Run

SIGTERM_MESSAGE = "the process running this run received SIGTERM and was terminated"

_active: dict[str, Run] = {}
_guard = threading.Lock()
_installed = False
terminated = False
uncaught: BaseException | None = None


def track(run: Run) -> None:
    install()
    with _guard:
        _active[run.id] = run


def untrack(run: Run) -> None:
    with _guard:
        _active.pop(run.id, None)


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_finish_open_runs)
    previous_hook = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        global uncaught
        uncaught = exc
        previous_hook(kind, exc, tb)

    sys.excepthook = hook
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    global terminated
    terminated = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def _finish_open_runs() -> None:
    with _guard:
        runs = list(_active.values())
    for run in reversed(runs):
        try:
            if terminated:
                run.fail(SIGTERM_MESSAGE, error_code="Terminated")
            elif uncaught is not None:
                run.fail(uncaught)
            else:
                run.complete()
        except Exception as exc:  # the process is ending: report, never hide
            print(f"runyard: could not finish run {run.id}: {exc}", file=sys.__stderr__)


def after_fork() -> None:
    global _installed
    with _guard:
        _active.clear()
    _installed = False


os.register_at_fork(after_in_child=after_fork)


class Tee(io.TextIOBase):
    """Write to the original stream and to a log file."""

    def __init__(self, original: TextIO, log: TextIO, path: str) -> None:
        self.original = original
        self.log = log
        self.path = path

    def write(self, text: str) -> int:
        self.original.write(text)
        try:
            self.log.write(text)
        except ValueError:  # the log was closed underneath us
            pass
        return len(text)

    def flush(self) -> None:
        self.original.flush()
        try:
            self.log.flush()
        except ValueError:
            pass

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")


class StreamCapture:
    """Tee ``sys.stdout`` and ``sys.stderr`` into ``path`` (append) while active."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._saved: tuple[Any, Any] | None = None
        self._log: TextIO | None = None

    def start(self) -> None:
        if isinstance(sys.stdout, Tee) and sys.stdout.path == self.path:
            return  # an outer `with run:` already captures into this file
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._log = open(  # noqa: SIM115 - stays open until stop()
            self.path, "a", encoding="utf-8", errors="replace", buffering=1
        )
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = Tee(sys.stdout, self._log, self.path)
        sys.stderr = Tee(sys.stderr, self._log, self.path)

    def stop(self, exc: BaseException | None = None) -> None:
        if self._saved is None or self._log is None:
            return
        if exc is not None and not _is_clean_exit(exc):
            traceback.print_exception(exc, file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = self._saved
        self._log.close()
        self._saved = None
        self._log = None


def _is_clean_exit(exc: BaseException) -> bool:
    return isinstance(exc, SystemExit) and exc.code in (0, None)
