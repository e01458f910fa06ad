"""`import runyard` stays light: no database driver, numpy, matplotlib or server stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("psycopg", "numpy", "matplotlib", "httpx", "fastapi", "uvicorn", "IPython", "sqlite3")


def test_import_runyard_loads_nothing_heavy():
    code = (
        "import sys, runyard; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_version_command():
    done = subprocess.run(
        [sys.executable, "-m", "runyard.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("runyard ")
