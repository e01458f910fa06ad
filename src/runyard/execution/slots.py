"""The local queue: at most N script runs of a workspace execute at once on this machine.

A slot is an OS file lock (``flock``) on ``<folder>/slot-<i>.lock``. The lock belongs to
the supervisor process: when it exits or is killed, the kernel releases it, so a crash
can never leave a slot taken. The holder writes its run id into the file (for messages).
A run's slot may be lent to its descendant runs while its script waits for them (see
``runyard._loans``).
"""

from __future__ import annotations

import fcntl
import os


class Slots:
    def __init__(self, folder: str, count: int) -> None:
        if count < 1:
            raise ValueError(f"the number of run slots must be at least 1, not {count}")
        self.folder = folder
        self.count = count
        os.makedirs(folder, exist_ok=True)

    def try_acquire(self, holder: str = "") -> int | None:
        """Take a free slot and return its file descriptor (keep it open), or None.

        A slot whose last holder died while a descendant run borrowed it (see ``_loans``)
        is not free until that borrower ends.
        """
        from .._loans import borrowed

        for index in range(self.count):
            fd = os.open(os.path.join(self.folder, f"slot-{index}.lock"), os.O_CREAT | os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            last = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            if last and borrowed(self.folder, last):
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
            return fd
        return None

    def holders(self) -> list[str]:
        """The run ids holding slots now (as they wrote them)."""
        found = []
        for index in range(self.count):
            path = os.path.join(self.folder, f"slot-{index}.lock")
            fd = os.open(path, os.O_CREAT | os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                found.append(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            finally:
                os.close(fd)
        return found
