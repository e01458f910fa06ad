#!/usr/bin/env python3
"""Set up the development environment and run the project's tasks.

    python3 dev.py demo     # virtualenv + install + examples/ridge_sweep.py
    python3 dev.py test     # ruff, mypy on src/, pytest
    python3 dev.py bench    # benchmarks/run.py: a table and one JSON line
    python3 dev.py cli-docs # rewrite the generated half of docs/cli.md from --help

Needs only Python 3.11+; everything else is installed into ./.venv from PyPI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
BIN = os.path.join(VENV, "Scripts" if os.name == "nt" else "bin")
PYTHON = os.path.join(BIN, "python")
STAMP = os.path.join(VENV, ".installed")


def run(*args: str) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=ROOT, check=True)


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"error: runyard needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    pyproject = os.path.join(ROOT, "pyproject.toml")
    if os.path.exists(STAMP) and os.path.getmtime(STAMP) >= os.path.getmtime(pyproject):
        return
    if not os.path.exists(PYTHON):
        print(f"creating a virtualenv in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", ".[dev]")
    with open(STAMP, "w") as fh:
        fh.write("installed\n")


def demo() -> None:
    run(PYTHON, "examples/ridge_sweep.py")


def test() -> None:
    run(PYTHON, "-m", "ruff", "check", "src", "tests", "examples", "benchmarks", "dev.py")
    run(PYTHON, "-m", "ruff", "format", "--check", "src", "tests", "examples", "benchmarks")
    run(PYTHON, "-m", "mypy")
    # two or more test workers (pytest-xdist): most tests wait on processes and servers;
    # a test group that shares one session resource (the Ray cluster) stays on one worker
    run(PYTHON, "-m", "pytest", "-ra", "-n", "auto", "--maxprocesses", "4", "--dist", "loadgroup")


def bench() -> None:
    run(PYTHON, "benchmarks/run.py", *sys.argv[2:])


def studio() -> None:
    run(os.path.join(BIN, "runyard"), "studio", *sys.argv[2:])


def cli_docs() -> None:
    run(PYTHON, "-m", "runyard.cli._docs", "docs/cli.md")


TASKS = {"demo": demo, "test": test, "bench": bench, "studio": studio, "cli-docs": cli_docs}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(f"usage: python3 dev.py {{{'|'.join(TASKS)}}}")
    ensure_environment()
    try:
        TASKS[sys.argv[1]]()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
    except KeyboardInterrupt:  # Ctrl-C stops runyard studio (and any task)
        sys.exit(130)
