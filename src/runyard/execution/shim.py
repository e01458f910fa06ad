"""The shim: runyard and all it needs, lent by the submitting installation to a virtualenv.

A script in an environment built from pip requirements must be able to use the whole SDK
(``Run.get_context()``, ``run.submit_child()``, which starts a supervisor with the same
interpreter), without the user listing runyard or its dependencies. The shim is a folder
of links, ``<env>/runyard-shim/<hash>/``, to runyard and to every installed distribution
of its dependency closure — its requirements, theirs in turn, with the ``postgres`` extra —
computed from ``importlib.metadata`` of the submitting installation. The folder's name is
the hash of its contents, so it never changes under a running script.

A ``.pth`` hook in the virtualenv appends the folder named by ``RUNYARD_SHIM`` to
``sys.path`` *after* site-packages: packages the requirements installed win, the shim only
fills the gaps. Other interpreters ignore the variable.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
from importlib import metadata
from typing import BinaryIO

ENV_VAR = "RUNYARD_SHIM"
HOOK = "_runyard_shim.pth"
HOOK_LINE = (
    "import os, sys; p = os.environ.get('RUNYARD_SHIM'); "
    "p and os.path.isdir(p) and p not in sys.path and sys.path.append(p)\n"
)
EXTRAS = ("postgres",)  # a run's workspace may be a PostgreSQL database
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(text: str) -> tuple[str, set[str], set[str]]:
    """(name, extras asked for, extras the requirement belongs to) of a requirement line."""
    spec, _, marker = text.partition(";")
    match = _NAME.match(spec)
    if match is None:
        return "", set(), set()
    extras = {_normal(e) for e in (match.group(2) or "").split(",") if e.strip()}
    return match.group(1), extras, {_normal(e) for e in _EXTRA.findall(marker)}


def closure(root: str = "runyard", extras: tuple[str, ...] = EXTRAS) -> list[metadata.Distribution]:
    """The installed distributions ``root`` needs, itself included.

    Requirements of extras are followed only for the extras asked for; other markers are
    not evaluated (a requirement that does not apply here is usually not installed, and a
    link too many is harmless: it comes after the environment's own packages).
    """
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()  # (distribution, extra or "") already followed
    todo: list[tuple[str, set[str]]] = [(root, {_normal(e) for e in extras})]
    while todo:
        name, wanted = todo.pop()
        key = _normal(name)
        if key not in found:
            try:
                found[key] = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
        for part in {"", *wanted} - {extra for dist, extra in done if dist == key}:
            done.add((key, part))
            for line in found[key].requires or []:
                child, child_extras, needs = _requirement(line)
                if child and (needs == set() if part == "" else part in needs):
                    todo.append((child, child_extras))
    return list(found.values())


def _entries(dist: metadata.Distribution) -> dict[str, str]:
    """Top-level names a distribution installed (packages, modules, its metadata)."""
    entries: dict[str, str] = {}
    for file in dist.files or []:
        top = file.parts[0] if file.parts else ""
        if not top or top in ("..", "__pycache__") or top.endswith(".pth"):
            continue
        entries.setdefault(top, os.path.realpath(str(dist.locate_file(top))))
    return entries


def links() -> dict[str, str]:
    """Name in the shim -> real path, for runyard's whole dependency closure."""
    mapping: dict[str, str] = {}
    for dist in closure():
        for name, source in _entries(dist).items():
            if os.path.exists(source):
                mapping.setdefault(name, source)
    spec = importlib.util.find_spec("runyard")  # an editable install has no files to list
    if spec is not None and spec.submodule_search_locations:
        mapping["runyard"] = os.path.realpath(next(iter(spec.submodule_search_locations)))
    return mapping


def build(env_folder: str) -> str:
    """Create (or reuse) the shim for this installation in ``env_folder``; return its path."""
    mapping = links()
    digest = hashlib.sha256(json.dumps(sorted(mapping.items())).encode()).hexdigest()[:16]
    folder = os.path.join(env_folder, "runyard-shim", digest)
    if os.path.isdir(folder):
        return folder
    building = f"{folder}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    for name, source in mapping.items():
        os.symlink(source, os.path.join(building, name))
    try:
        os.rename(building, folder)
    except OSError:  # built meanwhile by another installation's run
        shutil.rmtree(building, ignore_errors=True)
    return folder


def install_hook(env_folder: str, log: BinaryIO) -> None:
    """Put the ``.pth`` hook into the virtualenv's site-packages (once)."""
    found = glob.glob(os.path.join(env_folder, "lib", "python*", "site-packages"))
    for site in found:
        hook = os.path.join(site, HOOK)
        if not os.path.exists(hook):
            with open(hook + ".tmp", "w", encoding="utf-8") as fh:
                fh.write(HOOK_LINE)
            os.replace(hook + ".tmp", hook)
        version = os.path.basename(os.path.dirname(site)).removeprefix("python")
        ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if version != ours:
            log.write(
                f"note: this environment's Python is {version}, runyard's is {ours}: runyard's "
                "compiled dependencies (psutil, PyYAML, psycopg-binary) may not import "
                "there; list them in the requirements to install builds for this Python\n".encode()
            )
            log.flush()
