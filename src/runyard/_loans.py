"""Lending a local slot to descendant runs while a submitted script waits for them.

A script run executes while its supervisor holds a slot (see ``execution/slots.py``).
While that script is blocked in ``wait_for_completion()`` of one of its descendant runs,
it does not execute, so its slot may serve one of its descendants — one at a time:

- the waiting script holds ``loan-<run id>.lock`` (flock, exclusive) while it waits;
- a descendant's supervisor may run in the lent slot when it sees the loan held and takes
  ``borrow-<run id>.lock`` (flock, exclusive, not blocking), then checks the loan again;
- when the wait ends, the script releases the loan and takes the borrow lock (blocking):
  it executes again only once no borrower does;
- the lender's supervisor takes the borrow lock before it gives its slot back.

Every lock is an OS file lock, released by the kernel when its process dies. Only the
standard library is used here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

from . import _owners

FOLDER_VAR = "RUNYARD_SLOT_FOLDER"  # set by a supervisor for its script: "you hold a seat"
_held: dict[str, list[int]] = {}  # loan file -> [fd, waiting threads]
_guard = threading.Lock()


def _loan(folder: str, run_id: str) -> str:
    return os.path.join(folder, f"loan-{run_id}.lock")


def _borrow(folder: str, run_id: str) -> str:
    return os.path.join(folder, f"borrow-{run_id}.lock")


@contextlib.contextmanager
def lend(folder: str, run_id: str) -> Iterator[None]:
    """Lend ``run_id``'s slot for the duration of the block (threads of a process share)."""
    path = _loan(folder, run_id)
    with _guard:
        entry = _held.get(path)
        if entry is None:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            entry = _held[path] = [fd, 0]
        entry[1] += 1
    try:
        yield
    finally:
        with _guard:
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _held[path]
                os.close(entry[0])
        if last:
            take_back(folder, run_id)


def take_back(folder: str, run_id: str) -> None:
    """Block until no descendant runs in ``run_id``'s slot any more."""
    fd = os.open(_borrow(folder, run_id), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def _lent(fd: int) -> bool:
    """Is the loan whose file is open as ``fd`` held by its lender right now?"""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def try_borrow(folder: str, lenders: list[str]) -> tuple[int, str] | None:
    """Borrow the slot of the first of ``lenders`` that lends it now: (fd to keep, lender)."""
    for lender in lenders:
        try:
            loan = os.open(_loan(folder, lender), os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if not _lent(loan):
                continue
            seat = os.open(_borrow(folder, lender), os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(seat, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(seat)
                continue
            if not _lent(loan):  # the wait ended meanwhile: the lender executes again
                os.close(seat)
                continue
            return seat, lender
        finally:
            os.close(loan)
    return None


def borrowed(folder: str, run_id: str) -> bool:
    """Does a descendant run in ``run_id``'s slot right now (also if ``run_id`` is gone)?"""
    return _owners.lock_held(_borrow(folder, run_id)) is True


def settle(folder: str, run_id: str) -> bool:
    """Wait until no descendant borrows ``run_id``'s slot, then remove its loan files.

    Returns whether the run ever lent its slot. Call only once its script has ended.
    """
    path = _borrow(folder, run_id)
    if not os.path.exists(path) and not os.path.exists(_loan(folder, run_id)):
        return False
    take_back(folder, run_id)
    for name in (_loan(folder, run_id), path):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
    return True
