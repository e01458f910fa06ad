"""`import runyard` stays light: no database driver, numpy, matplotlib, CLI or server stack."""

from __future__ import annotations

import os
import subprocess
import sys

HEAVY = (
    "psycopg", "numpy", "matplotlib", "httpx", "fastapi", "uvicorn", "IPython", "sqlite3",
    "click", "jmespath", "tabulate", "yaml", "psutil", "pathspec", "pygments",
)  # fmt: skip


def test_import_runyard_loads_nothing_heavy():
    code = (
        "import sys, runyard; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_version_command():
    from runyard import __version__

    entry_point = os.path.join(os.path.dirname(sys.executable), "runyard")
    for command in ([entry_point], [sys.executable, "-m", "runyard.cli"]):
        done = subprocess.run([*command, "--version"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"runyard {__version__}"
