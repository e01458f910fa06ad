"""Checks shared by the SDK and the stores: names, keys, artifact paths."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

from .errors import UserError

MAX_NAME = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
EXPERIMENT_NAME = re.compile(r"^[a-zA-Z0-9][\w\-]{0,254}$")


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a usable metric/tag/property name, else raise UserError."""
    if not isinstance(name, str):
        raise UserError(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    if not name:
        raise UserError(f"{what} must not be empty; give a short name such as 'loss'")
    if len(name) > MAX_NAME:
        raise UserError(
            f"{what} is {len(name)} characters long; the limit is {MAX_NAME}: shorten it"
        )
    if _CONTROL.search(name):
        raise UserError(
            f"{what} {name!r} contains a control character (newline, tab, NUL...); remove it"
        )
    return name


def check_experiment_name(name: object) -> str:
    check_name(name, "experiment name")
    assert isinstance(name, str)
    if not EXPERIMENT_NAME.match(name):
        raise UserError(
            f"experiment name {name!r} is not valid: use 1-255 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_artifact_path(path: object) -> str:
    """Validate an artifact path before any filesystem call; return it normalised.

    A valid path is relative, uses forward slashes, and has no ``..``, drive letter, NUL
    or percent-encoded traversal.
    """
    if not isinstance(path, str):
        raise UserError(f"artifact name must be a string, got {type(path).__name__}")
    shown = repr(path)
    if not path or not path.strip():
        raise UserError(
            "artifact name must not be empty; use a relative path like 'outputs/model.pkl'"
        )
    if len(path) > 5000:
        raise UserError(f"artifact name is {len(path)} characters; the limit is 5000")
    decoded = path
    for _ in range(3):  # %252e%252e decodes twice
        nxt = unquote(decoded)
        if nxt == decoded:
            break
        decoded = nxt
    for candidate in (path, decoded):
        if "\x00" in candidate or _CONTROL.search(candidate):
            raise UserError(f"artifact name {shown} contains a control character; remove it")
        if "\\" in candidate:
            raise UserError(
                f"artifact name {shown} contains a backslash; use '/' to separate folders"
            )
        if candidate.startswith("/") or re.match(r"^[A-Za-z]:", candidate):
            raise UserError(
                f"artifact name {shown} is absolute; use a path relative to the run, "
                "like 'outputs/model.pkl'"
            )
        if ".." in candidate.split("/"):
            raise UserError(
                f"artifact name {shown} contains '..'; artifact paths cannot leave the run"
            )
    normal = posixpath.normpath(path)
    if normal in (".", "") or path.endswith("/"):
        raise UserError(f"artifact name {shown} names a folder, not a file; add a file name")
    return normal
