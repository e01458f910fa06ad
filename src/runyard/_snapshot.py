"""Snapshots of a source folder: ignore rules, limits, content-addressed zips.

The ignore file is the first of ``.runyardignore``, ``.amlignore``, ``.gitignore`` at
the folder's root (gitignore syntax). ``.git`` and ``.runyard`` are always left out,
and so is the workspace itself when it lies inside the folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .errors import SnapshotError, UserError

if TYPE_CHECKING:
    from .artifacts.base import ArtifactStore
    from .store.base import Store

IGNORE_FILES = (".runyardignore", ".amlignore", ".gitignore")
ALWAYS_EXCLUDED = (".git", ".runyard")
MAX_BYTES = 300 * 1024 * 1024
MAX_FILES = 2000
_EPOCH = (1980, 1, 1, 0, 0, 0)


def snapshot_files(directory: str, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(relative posix path, full path) of every file a snapshot of ``directory`` holds."""
    import pathspec

    root = os.path.realpath(directory)
    if not os.path.isdir(root):
        raise UserError(f"snapshot_directory {directory!r} is not a folder")
    spec = None
    for name in IGNORE_FILES:
        candidate = os.path.join(root, name)
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8", errors="replace") as fh:
                spec = pathspec.GitIgnoreSpec.from_lines(fh.read().splitlines())
            break
    skip = {os.path.realpath(p) for p in exclude if p}
    found = []
    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for d in sorted(dirs):
            full = os.path.join(current, d)
            if not rel_dir and d in ALWAYS_EXCLUDED:
                continue
            if os.path.realpath(full) in skip:
                continue
            if spec is not None and spec.match_file(rel_dir + d + "/"):
                continue
            if os.path.islink(full):
                continue  # never follow a linked folder
            kept.append(d)
        dirs[:] = kept
        for f in sorted(files):
            rel = rel_dir + f
            full = os.path.join(current, f)
            if spec is not None and spec.match_file(rel):
                continue
            real = os.path.realpath(full)
            if os.path.commonpath([real, root]) != root or not os.path.isfile(real):
                continue  # a link pointing outside the folder, or a dangling one
            found.append((rel, full))
    return found


def take_snapshot(
    directory: str, store: Store, artifacts: ArtifactStore, exclude: Iterable[str] = ()
) -> str:
    """Snapshot ``directory``; return the content id (stored once however often taken)."""
    files = snapshot_files(directory, exclude)
    if len(files) > MAX_FILES:
        raise SnapshotError(
            f"While attempting to take snapshot of {directory}: it holds {len(files)} files, "
            f"over the limit of {MAX_FILES}. Exclude files in a .runyardignore at its root "
            "(gitignore syntax), or pass snapshot_directory=None."
        )
    sizes = []
    for rel, full in files:
        try:
            sizes.append((rel, full, os.path.getsize(full)))
        except OSError as exc:
            print(f"runyard: skipping unreadable file {full} in the snapshot: {exc}")
    total = sum(size for _, _, size in sizes)
    if total > MAX_BYTES:
        raise SnapshotError(
            f"While attempting to take snapshot of {directory}: your total snapshot size "
            f"({total / 1024 / 1024:.1f} MB) exceeds the limit of "
            f"{MAX_BYTES / 1024 / 1024:.1f} MB. Exclude large files in a .runyardignore at "
            "its root (gitignore syntax), or pass snapshot_directory=None."
        )
    digest = hashlib.sha256()
    entries = []
    for rel, full, _size in sizes:
        content = hashlib.sha256()
        try:
            with open(full, "rb") as fh:
                while block := fh.read(1 << 20):
                    content.update(block)
        except OSError as exc:
            print(f"runyard: skipping unreadable file {full} in the snapshot: {exc}")
            continue
        executable = os.access(full, os.X_OK)
        digest.update(f"{rel}\0{content.hexdigest()}\0{int(executable)}\n".encode())
        entries.append((rel, full, executable))
    snapshot_id = digest.hexdigest()[:32]
    if store.has_snapshot(snapshot_id):
        return snapshot_id
    from . import _owners

    # in this process's scratch folder: if the process is killed, a later one sweeps it
    fd, tmp = tempfile.mkstemp(prefix="snapshot-", suffix=".zip", dir=_owners.process_folder())
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel, full, executable in entries:
                info = zipfile.ZipInfo(rel, _EPOCH)
                info.external_attr = (0o755 if executable else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(full, "rb") as src, zf.open(info, "w") as dst:
                    while block := src.read(1 << 20):
                        dst.write(block)
        with open(tmp, "rb") as fh:
            staged, _, _ = artifacts.stage(fh)
        artifacts.put_snapshot(snapshot_id, staged)
    finally:
        os.unlink(tmp)
    store.add_snapshot(snapshot_id, total, len(entries))
    return snapshot_id
