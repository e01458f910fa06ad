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


def content_id(entries: Iterable[tuple[str, str, bool]]) -> str:
    """The snapshot id of (relative path, sha256 of the content, executable) entries,
    in their order: a client's zip and the server's check of it hash the same way."""
    digest = hashlib.sha256()
    for rel, content, executable in entries:
        digest.update(f"{rel}\0{content}\0{int(executable)}\n".encode())
    return digest.hexdigest()[:32]


def zip_content_id(
    path: str, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES
) -> tuple[str, int, int]:
    """(snapshot id, total bytes, files) of the snapshot zip at ``path``, from its content.

    Only what ``take_snapshot`` writes is accepted: regular-file entries with valid,
    distinct relative names; at most ``max_files`` of them and ``max_bytes`` once
    decompressed (counted as they decompress, so a zip bomb stops at the limit).
    """
    import stat
    import zlib

    from ._validation import check_artifact_path

    lines = []
    total = 0
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > max_files:
                raise SnapshotError(
                    f"the snapshot zip holds {len(infos)} entries, over the limit of {max_files}"
                )
            for info in infos:
                name = info.filename
                mode = info.external_attr >> 16
                if (
                    info.is_dir()
                    or (stat.S_IFMT(mode) not in (0, stat.S_IFREG))
                    or check_artifact_path(name) != name
                    or name in seen
                ):
                    raise UserError(
                        f"the snapshot zip holds the entry {name[:200]!r}, which is not a "
                        "regular file with a distinct relative name"
                    )
                seen.add(name)
                content = hashlib.sha256()
                with zf.open(info) as fh:
                    while block := fh.read(1 << 20):
                        total += len(block)
                        if total > max_bytes:
                            raise SnapshotError(
                                f"the snapshot zip holds over {max_bytes} bytes once "
                                "decompressed, over the limit"
                            )
                        content.update(block)
                lines.append((name, content.hexdigest(), bool(mode & 0o111)))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        RuntimeError,
        NotImplementedError,
        EOFError,
        zlib.error,
        ValueError,
    ) as exc:
        raise UserError(f"the snapshot is not a valid zip: {exc}") from None
    return content_id(lines), total, len(lines)


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
    entries = []
    lines = []
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
        lines.append((rel, content.hexdigest(), executable))
        entries.append((rel, full, executable))
    snapshot_id = content_id(lines)
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
