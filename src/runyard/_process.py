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
from typing import TYPE_CHECKING, Any, BinaryIO

from ._terminal import say

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
    global _installed, _guard
    _guard = threading.Lock()  # another thread of the parent may have held it at fork
    _active.clear()
    _installed = False


os.register_at_fork(after_in_child=after_fork)


class _LogSink:
    """The run's log file shared by the stdout and stderr tees of one capture.

    Text goes through a line-buffered UTF-8 text layer (lone surrogates backslash-escaped),
    bytes straight to the file after it. A write that fails (disk full, artifact folder
    gone) stops the copying, says so once, and never fails the user's ``print``.
    """

    def __init__(self, log: BinaryIO) -> None:
        self._log: io.TextIOWrapper | None = io.TextIOWrapper(
            log, encoding="utf-8", errors="backslashreplace", newline="", line_buffering=True
        )

    @property
    def active(self) -> bool:
        return self._log is not None

    def write_text(self, text: str) -> None:
        log = self._log
        if log is not None:
            try:
                log.write(text)
            except (OSError, ValueError) as exc:
                self._give_up(exc)

    def write_bytes(self, data: bytes) -> None:
        log = self._log
        if log is not None and data:
            try:
                log.flush()
                log.buffer.write(data)
                if b"\n" in data:
                    log.buffer.flush()
            except (OSError, ValueError) as exc:
                self._give_up(exc)

    def flush(self) -> None:
        log = self._log
        if log is not None:
            try:
                log.flush()
            except (OSError, ValueError) as exc:
                self._give_up(exc)

    def close(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            try:
                log.close()
            except (OSError, ValueError) as exc:
                say(f"runyard: could not finish the run's log: {exc}")

    def _give_up(self, exc: BaseException) -> None:
        log, self._log = self._log, None
        if log is None:
            return
        try:
            log.close()
        except (OSError, ValueError):
            pass
        say(f"runyard: output is no longer copied into the run's log: {exc}")


class _SameDevice:
    """What a tee answers as the stream it wraps: the same terminal, file or pipe."""

    _original: Any

    def isatty(self) -> bool:
        return bool(self._original.isatty())

    def fileno(self) -> int:
        return int(self._original.fileno())

    def readable(self) -> bool:
        return bool(getattr(self._original, "readable", lambda: False)())

    def writable(self) -> bool:
        return bool(getattr(self._original, "writable", lambda: True)())


class Tee(_SameDevice, io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` inside ``with run:``: the stream it replaces, plus a copy.

    Text goes through the original stream's own text layer and bytes written to
    ``.buffer`` through its own buffer, so encoding, errors, buffering and
    ``reconfigure()`` stay the original's; every attribute not defined here (``name``,
    ``line_buffering``, ``reconfigure``, ``mode``...) is the original's. Closing or
    detaching the tee never closes the original. Once the capture stops the tee passes
    everything through, so a handler made inside the block keeps working after it.
    """

    def __init__(self, original: Any, sink: _LogSink) -> None:
        self._original = original
        self._sink = sink
        self._buffer: _TeeBuffer | None = None
        self._closed = False
        self._detached = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_original"):
            raise AttributeError(name)
        return getattr(self._original, name)

    def __repr__(self) -> str:
        return f"<runyard tee of {self._original!r}>"

    @property
    def original(self) -> Any:
        return self._original

    def _check_usable(self) -> None:
        if self._detached:
            raise ValueError("underlying buffer has been detached")
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._closed or self._detached:
            self._check_usable()
        self._original.write(text)
        self._sink.write_text(text)
        return len(text)

    def flush(self) -> None:
        self._check_usable()
        self._original.flush()
        self._sink.flush()

    @property
    def buffer(self) -> _TeeBuffer:
        """The original's binary buffer, tee'd: bytes reach it and the log."""
        if self._buffer is None:
            self._buffer = _TeeBuffer(self, self._original.buffer)
        return self._buffer

    def detach(self) -> Any:
        """Hand over the (tee'd) buffer; the original stream itself stays usable."""
        self._check_usable()
        buffer = self.buffer
        self._detached = True
        return buffer

    def close(self) -> None:
        """Mark the tee closed; the terminal stream it wraps stays open."""
        if not self._closed and not self._detached:
            try:
                self.flush()
            except (OSError, ValueError):
                pass
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed or bool(getattr(self._original, "closed", False))

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._original, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]  # attributes in typeshed
        return getattr(self._original, "errors", None)

    @property
    def newlines(self) -> Any:  # type: ignore[override]
        return getattr(self._original, "newlines", None)

    def seekable(self) -> bool:
        return bool(getattr(self._original, "seekable", lambda: False)())


class _TeeBuffer(_SameDevice, io.BufferedIOBase):
    """``sys.stdout.buffer`` inside ``with run:``: bytes reach the terminal and the log."""

    def __init__(self, tee: Tee, original: Any) -> None:
        self._tee = tee
        self._original = original
        self._closed = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_original"):
            raise AttributeError(name)
        return getattr(self._original, name)

    def __repr__(self) -> str:
        return f"<runyard tee of {self._original!r}>"

    def write(self, data: Any) -> int:
        payload = bytes(memoryview(data))
        if self._closed:
            raise ValueError("write to closed file")
        try:
            self._tee._original.flush()  # text printed earlier comes out first
        except (OSError, ValueError, AttributeError):
            pass
        written = self._original.write(payload)
        self._tee._sink.write_bytes(payload[:written] if isinstance(written, int) else payload)
        return written if isinstance(written, int) else len(payload)

    def flush(self) -> None:
        if self._closed:
            raise ValueError("flush of closed file")
        self._original.flush()
        self._tee._sink.flush()

    def close(self) -> None:
        """Mark this view closed; the terminal's buffer stays open."""
        if not self._closed:
            try:
                self.flush()
            except (OSError, ValueError):
                pass
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed or bool(getattr(self._original, "closed", False))

    def detach(self) -> Any:
        raise io.UnsupportedOperation("detach: the buffer of a captured stream stays attached")

    def seekable(self) -> bool:
        return False


class StreamCapture:
    """While started, ``sys.stdout`` and ``sys.stderr`` also write into ``log``.

    ``log`` is a binary file of this run alone (the run's ``logs/user_log.txt``), so
    runs started one after another, at once, or nested never share a capture file. A
    capture nested in another writes into both logs. ``stop()`` puts back the streams it
    replaced, unless the code inside replaced them itself (those replacements stay; the
    tees they may wrap pass writes through from then on).
    """

    def __init__(self, log: BinaryIO) -> None:
        self._sink = _LogSink(log)
        self._tees: tuple[Tee | None, Tee | None] | None = None
        self._saved: tuple[Any, Any] = (None, None)

    def start(self) -> None:
        if self._tees is not None:
            return
        self._saved = (sys.stdout, sys.stderr)
        out = Tee(sys.stdout, self._sink) if sys.stdout is not None else None
        err = Tee(sys.stderr, self._sink) if sys.stderr is not None else None
        self._tees = (out, err)
        if out is not None:
            sys.stdout = out
        if err is not None:
            sys.stderr = err

    def stop(self, exc: BaseException | None = None) -> None:
        """Restore the streams and close the log; an exception's traceback goes in the log."""
        if self._tees is None:
            return
        out, err = self._tees
        self._tees = None
        try:
            if exc is not None and not _is_clean_exit(exc):
                self._sink.write_text("".join(traceback.format_exception(exc)))
            for tee in (out, err):
                if tee is not None and not tee._closed and not tee._detached:
                    try:
                        tee.flush()
                    except (OSError, ValueError):
                        pass
            if out is not None and sys.stdout is out:
                sys.stdout = _unwrap(self._saved[0])
            if err is not None and sys.stderr is err:
                sys.stderr = _unwrap(self._saved[1])
        finally:
            self._sink.close()


def _unwrap(stream: Any) -> Any:
    """Skip tees whose capture has ended (a nested capture stopped out of order)."""
    while isinstance(stream, Tee) and not stream._sink.active:
        stream = stream._original
    return stream


def _is_clean_exit(exc: BaseException) -> bool:
    return isinstance(exc, SystemExit) and exc.code in (0, None)
