"""Who owns a temporary file or a supervisor, and whether that owner still lives.

A process is named ``<host key>-<pid>-<start>``: the host key tells machines (boots, pid
namespaces) apart, and the start time tells a process from a later one that got the same
pid. Files and folders a process may leave behind when it is killed (staged uploads,
snapshot zips, run folders) carry its name, so whoever comes later can tell the leftovers
of a dead process from work in progress, and sweep them.

Only the standard library is imported here (``import runyard`` stays light).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time

FOREIGN_MAX_AGE = 7 * 86400  # leftovers of another machine's processes: swept after a week
_UNKNOWN = "?"
_cache: dict[str, str] = {}


def host_key() -> str:
    """12 hex digits naming this boot of this machine and its pid namespace.

    Two processes may compare process ids only when their host keys are equal.
    """
    key = _cache.get("host")
    if key is None:
        parts = []
        try:
            with open("/proc/sys/kernel/random/boot_id") as fh:
                parts.append(fh.read().strip())
            parts.append(os.readlink("/proc/self/ns/pid"))
        except OSError:
            import socket

            parts = [socket.gethostname()]  # elsewhere start times are absolute
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
        _cache["host"] = key
    return key


def process_start(pid: int, zombie_ok: bool = False) -> str | None:
    """An opaque start stamp of process ``pid``; None if it does not exist or is a zombie
    (unless ``zombie_ok``: an exited child not yet waited for).

    ``"?"`` when the process exists but cannot be inspected (another user's, hidden /proc).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return _exists_unreadable(pid)
    except OSError:
        return _start_elsewhere(pid, zombie_ok)
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X") and not zombie_ok:
        return None
    return fields[19].decode()


def _exists_unreadable(pid: int) -> str | None:
    if not os.path.isdir("/proc/self"):
        return _start_elsewhere(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return _UNKNOWN
    return _UNKNOWN  # pragma: no cover - exists but /proc hides it (hidepid)


def _start_elsewhere(pid: int, zombie_ok: bool = False) -> str | None:  # pragma: no cover
    try:
        import psutil
    except ImportError:
        return _UNKNOWN
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE and not zombie_ok:
            return None
        return str(int(proc.create_time() * 100))
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:
        return _UNKNOWN


def process_name(pid: int | None = None, zombie_ok: bool = False) -> str:
    """``<host key>-<pid>-<start>`` of this process (or of ``pid``, which must exist)."""
    pid = os.getpid() if pid is None else pid
    start = process_start(pid, zombie_ok)
    if start is None or start == _UNKNOWN:
        raise ProcessLookupError(f"process {pid} is gone or cannot be inspected")
    return f"{host_key()}-{pid}-{start}"


def _parse(name: str) -> tuple[str, int, str] | None:
    parts = name.split("-")
    if len(parts) != 3 or len(parts[0]) != 12 or not parts[1].isdigit() or not parts[2]:
        return None
    return parts[0], int(parts[1]), parts[2]


def alive(name: str) -> bool | None:
    """Is the process ``name`` (from :func:`process_name`) still running?

    None when it ran on another machine (or pid namespace): that cannot be checked here.
    """
    parsed = _parse(name)
    if parsed is None:
        raise ValueError(f"{name!r} is not a process name")
    host, pid, start = parsed
    if host != host_key():
        return None
    now = process_start(pid)
    return now is not None and now in (start, _UNKNOWN)


SHARED_FOLDERS = ("supervisors",)  # in the scratch root, shared by every process


def scratch_root() -> str:
    """This user's folder for runyard's temporary files: ``<temp>/runyard-<uid>`` (0700)."""
    import tempfile

    root = os.path.join(tempfile.gettempdir(), f"runyard-{os.getuid()}")
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        from .errors import UserError

        raise UserError(
            f"{root} is not a folder of yours; remove it, or point TMPDIR at another folder"
        )
    if info.st_mode & 0o077:
        os.chmod(root, 0o700)
    return root


def process_folder() -> str:
    """This process's own scratch folder, removed by the next sweep after the process ends.

    The first call in a process sweeps the folders of processes that are gone.
    """
    key = f"folder-{os.getpid()}"
    folder = _cache.get(key)
    if folder is None or not os.path.isdir(folder):
        root = scratch_root()
        sweep(root, keep=SHARED_FOLDERS)
        folder = os.path.join(root, process_name())
        os.makedirs(folder, exist_ok=True)
        _cache[key] = folder
    return folder


def owned_prefix() -> str:
    """A file name prefix naming this process as the owner: ``<process name>.``."""
    return process_name() + "."


def sweep(folder: str, keep: tuple[str, ...] = ()) -> list[str]:
    """Remove the entries of ``folder`` owned by dead processes; return what was removed.

    Entries named in ``keep`` (folders every process shares) are never removed.

    An entry is owned when its name is ``<process name>`` or ``<process name>.<anything>``.
    Entries of another machine's processes, and entries with no owner in their name, are
    removed only once they are older than a week.
    """
    removed: list[str] = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    for name in names:
        if name in keep:
            continue
        path = os.path.join(folder, name)
        parsed = _parse(name.split(".", 1)[0])
        verdict = None if parsed is None else alive(name.split(".", 1)[0])
        if verdict:
            continue
        if verdict is None:
            try:
                age = time.time() - os.lstat(path).st_mtime
            except FileNotFoundError:
                continue
            if age < FOREIGN_MAX_AGE:
                continue
        remove(path)
        removed.append(path)
    return removed


def remove(path: str) -> None:
    """Remove a file or a whole folder, also one holding folders a script made read-only."""
    import shutil

    for _ in range(3):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            _grant_access(path)
    shutil.rmtree(path, ignore_errors=True)


def _grant_access(path: str) -> None:
    """Give the owner full access to ``path``'s folder and every folder below ``path``."""
    for target in (os.path.dirname(path), path):
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                os.chmod(target, stat.S_IRWXU)
        except OSError:
            pass
    if os.path.isdir(path) and not os.path.islink(path):
        for current, dirs, _files in os.walk(path):
            for name in dirs:
                full = os.path.join(current, name)
                try:
                    if not os.path.islink(full):
                        os.chmod(full, stat.S_IRWXU)
                except OSError:
                    pass


def lock_held(path: str) -> bool | None:
    """Does some process hold an ``flock`` on ``path``? None: the file cannot be looked at."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False
