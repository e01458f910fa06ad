"""Virtualenvs for ``Environment.from_pip_requirements``: built once per requirement set.

Each lives in ``<workspace>/envs/<hash>``; a file lock makes concurrent runs that need the
same environment wait for one build, and a marker file tells a finished build from a
half-built one (which is thrown away and built again).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

from . import process_tree, shim
from .failure import RunFailure

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .environment import Environment

READY = ".runyard-ready"
CHECK_EVERY = 0.2
Check = Callable[[], None]  # raises when the run must stop (canceled, failed from outside)


def _no_check() -> None:
    pass


def prepare_virtualenv(
    workspace: Workspace, environment: Environment, log: BinaryIO, check: Check = _no_check
) -> tuple[str, str]:
    """Build or reuse the environment; return (its python, its shim folder: see shim.py).

    ``check`` is called every few tenths of a second while this waits (for another run's
    build of the same environment, for venv, for pip); what it raises stops the build —
    pip and everything it started end — and comes out of here.
    """
    key = environment.requirements_hash()
    assert key is not None
    root = os.path.join(workspace._local_root(), "envs")
    os.makedirs(root, exist_ok=True)
    target = os.path.join(root, key)
    python = os.path.join(target, "bin", "python")
    with open(target + ".lock", "w") as lock:
        _lock(lock.fileno(), log, check)
        if os.path.exists(os.path.join(target, READY)):
            _write(log, f"reusing environment {key} at {target}\n")
        else:
            try:
                _build(environment, target, python, log, check)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)  # a half-built environment
                raise
        shim.install_hook(target, log)
        folder = shim.build(target)
    return python, folder


def _lock(fd: int, log: BinaryIO, check: Check) -> None:
    """Take the environment's build lock; another run may be building it."""
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if not told:
                told = True
                _write(log, "another run is building this environment: waiting for it\n")
        check()
        time.sleep(CHECK_EVERY)


def _write(log: BinaryIO, text: str) -> None:
    log.write(text.encode())
    log.flush()


def _build(environment: Environment, target: str, python: str, log: BinaryIO, check: Check) -> None:
    shutil.rmtree(target, ignore_errors=True)
    base = environment.python.interpreter()
    requirements = environment.python.pip_requirements or []
    _write(log, f"building environment in {target} from {base}\n")
    _step(log, [base, "-m", "venv", target], "creating the virtualenv", check)
    listing = os.path.join(target, "requirements.txt")
    with open(listing, "w", encoding="utf-8") as fh:
        fh.write("\n".join(requirements) + "\n")
    _write(log, "requirements:\n" + "".join(f"  {r}\n" for r in requirements))
    _step(
        log,
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-r", listing],
        "pip install",
        check,
    )
    with open(os.path.join(target, READY), "w") as fh:
        fh.write("ok\n")
    _write(log, "environment ready\n")


def _step(log: BinaryIO, argv: list[str], what: str, check: Check) -> None:
    _write(log, "$ " + " ".join(argv) + "\n")
    log_start = log.tell()
    try:  # under a keeper: pip and its builds end if the supervisor is killed
        proc = process_tree.start(argv, None, None, stdout=log, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise RunFailure(
            f"{what} could not start {argv[0]!r}: {exc.strerror}", "EnvironmentBuildFailed"
        ) from None
    try:
        while True:
            try:
                returncode = proc.wait(timeout=CHECK_EVERY)
                break
            except subprocess.TimeoutExpired:
                check()
    except BaseException:
        proc.terminate()  # the keeper stops pip and everything it started
        proc.wait()
        _write(log, f"{what} stopped\n")
        raise
    if returncode != 0:
        log.flush()
        with open(log.name, "rb") as fh:
            fh.seek(max(log_start, os.fstat(fh.fileno()).st_size - 65536))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()[-15:]
        raise RunFailure(
            f"{what} failed (exit code {returncode}); the full log is "
            "system_logs/environment.txt. Its last lines:\n" + "\n".join(lines),
            "EnvironmentBuildFailed",
        )
