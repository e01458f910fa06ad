"""Checks shared by the SDK and the stores: names, keys, artifact paths."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

from .errors import UserError

MAX_NAME = 255
MAX_PATH_PART = 255  # bytes: the file-name limit of common filesystems
# bytes of UTF-8: PostgreSQL indexes at most ~2,700 bytes per entry (an artifact's run id
# and path), and Linux paths end at 4,096 bytes
MAX_ARTIFACT_PATH = 2000
# characters of a tag's or property's value: MLflow's limit for a tag (its params take 6,000)
MAX_VALUE = 8000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
RUN_ID = re.compile(r"^\w[\w.\-]*$")
SNAPSHOT_ID = re.compile(r"^[0-9a-f]{32}$")


def check_text(value: object, what: str, limit: int | None = None) -> str:
    """Return ``value`` if it is storable free text (a tag value, a description...).

    NUL and lone surrogates are refused: PostgreSQL cannot store the first, neither
    database can store the second, and both would break every reader of the value.
    """
    if not isinstance(value, str):
        raise UserError(f"{what} must be a string, not {type(value).__name__}: {value!r}")
    if limit is not None and len(value) > limit:
        raise UserError(f"{what} is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise UserError(f"{what} {_short(value)} contains a NUL character; remove it")
    if _SURROGATE.search(value):
        raise UserError(
            f"{what} {_short(value)} contains a lone surrogate (text that is not valid "
            "Unicode, often a file name decoded with errors='surrogateescape'); fix its text"
        )
    return value


def _short(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def check_name(name: object, what: str = "name") -> str:
    """Return ``name`` if it is a usable metric/tag/property name, else raise UserError."""
    if not isinstance(name, str):
        raise UserError(f"{what} must be a string, got {type(name).__name__}: {name!r}")
    if not name:
        raise UserError(f"{what} must not be empty")
    if len(name) > MAX_NAME:
        raise UserError(
            f"{what} is {len(name)} characters long; the limit is {MAX_NAME}: shorten it"
        )
    if _CONTROL.search(name):
        raise UserError(
            f"{what} {_short(name)} contains a control character (newline, tab, NUL...); remove it"
        )
    return check_text(name, what)


def check_key_and_value(key: str, value: str | None, what: str) -> None:
    """Refuse a tag or property value longer than ``MAX_VALUE`` characters (the key is a
    name: ``check_name``). Values are indexed by their MD5 on PostgreSQL, so any length
    up to that fits both databases."""
    if value is not None and len(value) > MAX_VALUE:
        raise UserError(
            f"{what} {_short(key)} has a value of {len(value)} characters; a value may have "
            f"at most {MAX_VALUE}: shorten it, or store long text as a file (run.upload_file)"
        )


def check_run_id(run_id: object, what: str = "run id") -> str:
    """Return ``run_id`` if it can name a run everywhere (database, folders, URLs).

    A run id is one path component: letters, digits, ``_``, ``-`` and ``.``, starting with
    a letter, digit or ``_`` (so never ``.`` or ``..``), at most 255 bytes.
    """
    check_name(run_id, what)
    assert isinstance(run_id, str)
    if not RUN_ID.fullmatch(run_id) or len(run_id.encode()) > MAX_PATH_PART:
        raise UserError(
            f"{what} {_short(run_id)} is not valid: use 1-255 letters, digits, '_', '-' or "
            "'.', starting with a letter, digit or '_' (no '/', spaces or '..')"
        )
    return run_id


def check_snapshot_id(snapshot_id: object) -> str:
    if not isinstance(snapshot_id, str) or not SNAPSHOT_ID.fullmatch(snapshot_id):
        raise UserError(f"snapshot id {snapshot_id!r} is not valid: it is 32 hex digits")
    return snapshot_id


def check_experiment_name(name: object) -> str:
    """An experiment name: 1-255 characters of text without control characters, not blank.
    Wider than Azure ML's rule (letters, digits, '_' and '-'), as MLflow's names are
    ("My experiment", "/Shared/churn"); a name is never part of a path."""
    check_name(name, "experiment name")
    assert isinstance(name, str)
    if not name.strip():
        raise UserError(f"experiment name {name!r} is blank; name it with some text")
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
    if len(path.encode("utf-8", "replace")) > MAX_ARTIFACT_PATH:
        raise UserError(
            f"artifact name {_short(path)} takes {len(path.encode('utf-8', 'replace'))} bytes "
            f"of UTF-8; the limit is {MAX_ARTIFACT_PATH}: shorten it"
        )
    decoded = path
    for _ in range(3):  # %252e%252e decodes twice
        nxt = unquote(decoded)
        if nxt == decoded:
            break
        decoded = nxt
    if _SURROGATE.search(path):
        raise UserError(
            f"artifact name {shown} contains a lone surrogate (not valid Unicode); fix its text"
        )
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
        # "..;x" too: servers that take ';' as path parameters read it as ".."
        if any(part.split(";", 1)[0] == ".." for part in candidate.split("/")):
            raise UserError(
                f"artifact name {shown} contains '..'; artifact paths cannot leave the run"
            )
    normal = posixpath.normpath(path)
    if normal in (".", "") or path.endswith("/"):
        raise UserError(f"artifact name {shown} names a folder, not a file; add a file name")
    for part in normal.split("/"):
        if len(part.encode()) > MAX_PATH_PART:
            raise UserError(
                f"artifact name {_short(path)} has a part of {len(part.encode())} bytes; "
                f"each folder or file name may have at most {MAX_PATH_PART}: shorten it"
            )
    return normal


def check_status(status: str | None) -> str | None:
    """``status`` if it is one of the run statuses (or None); a UserError listing them."""
    from .records import ALL_STATUSES

    if status is not None and status not in ALL_STATUSES:
        raise UserError(f"unknown status {status!r}; use one of {', '.join(ALL_STATUSES)}")
    return status


COMPUTE_TYPES = ("ray",)
_COMPUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,31}$")


def check_compute(name: object, type: object, address: object) -> tuple[str, str, str]:
    """Return (name, type, address) if they can describe a compute target, else raise
    UserError: a name of 2-32 letters, digits and hyphens starting with a letter (``local``
    is the local target), a known type, an http(s) URL without credentials."""
    from urllib.parse import urlsplit

    if not isinstance(name, str) or not _COMPUTE_NAME.match(name):
        raise UserError(
            f"compute target name {_short(str(name))} is not valid: use 2 to 32 letters, "
            "digits and hyphens, starting with a letter"
        )
    if name.lower() == "local":
        raise UserError("'local' names the local compute target; pick another name")
    if type not in COMPUTE_TYPES:
        raise UserError(
            f"compute target type {type!r} is not supported; use one of {', '.join(COMPUTE_TYPES)}"
        )
    check_text(address, "compute target address", 2000)
    assert isinstance(address, str)
    try:
        parts = urlsplit(address)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise UserError(f"compute target address {_short(address)} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(
            f"compute target address {_short(address)} must be the http(s) URL of the "
            "cluster's dashboard, such as http://head:8265"
        )
    if parts.username or parts.password:
        raise UserError(
            "compute target address must not hold a user name or password: the address is "
            "shown to every reader of the workspace"
        )
    if parts.query or parts.fragment or any(c.isspace() for c in address):
        raise UserError(
            f"compute target address {_short(address)} must be a plain URL such as "
            "http://head:8265 (no spaces, query or fragment)"
        )
    return name, type, address.rstrip("/")
