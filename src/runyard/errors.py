"""One error hierarchy for runyard.

Every class has a stable ``code`` (what a REST client sees) and an ``http_status``.
User mistakes raise a :class:`UserError` subclass whose message says what was wrong
and what to do about it.

    >>> from runyard.errors import UserError
    >>> try:
    ...     raise UserError("metric name must not be empty; pass a name such as 'loss'")
    ... except UserError as exc:
    ...     exc.code
    'UserError'
"""

from __future__ import annotations


class RunyardError(Exception):
    """Base class of every error runyard raises on purpose."""

    code = "RunyardError"
    http_status = 500


class UserError(RunyardError):
    """The caller asked for something that cannot be done; the message says what to do."""

    code = "UserError"
    http_status = 400


class NotFound(UserError):
    """A run, experiment, artifact or snapshot that does not exist."""

    code = "NotFound"
    http_status = 404


class Conflict(UserError):
    """A write that contradicts what is stored: an existing artifact, a property's value."""

    code = "Conflict"
    http_status = 409


class Unauthenticated(UserError):
    """A runyard server was called without a valid token (missing, wrong, expired, revoked)."""

    code = "Unauthenticated"
    http_status = 401


class Forbidden(UserError):
    """A valid token whose role (or run scope) does not allow the request."""

    code = "Forbidden"
    http_status = 403


class TooLarge(UserError):
    """A request body over one of the server's limits; the message gives the limit."""

    code = "TooLarge"
    http_status = 413


class ConfigNotFound(UserError):
    """No ``.runyard/config.json`` was found where one was looked for."""

    code = "ConfigNotFound"
    http_status = 400


class RunEnvironmentError(UserError):
    """``Run.get_context(allow_offline=False)`` outside a submitted run."""

    code = "RunEnvironmentError"
    http_status = 400


class SnapshotError(UserError):
    """The snapshot directory is too large or holds too many files."""

    code = "SnapshotError"
    http_status = 413


class ActivityFailedError(RunyardError):
    """A run that was waited for ended Failed; ``error_details`` holds its error."""

    code = "ActivityFailed"
    http_status = 500

    def __init__(self, error_details: str) -> None:
        super().__init__(error_details)
        self.error_details = error_details


class StoreError(RunyardError):
    """The store could not carry out a request (database unreachable, corrupt file...)."""

    code = "StoreError"
    http_status = 503


class ServerUnreachable(StoreError):
    """A runyard server did not answer (connection refused, reset, timed out, 502/503/504)
    within the client's retry budget."""

    code = "ServerUnreachable"
    http_status = 503


class ExperimentExecutionError(RunyardError):
    """Watching a run was interrupted (Ctrl-C); the run itself goes on."""

    code = "ExperimentExecutionError"
    http_status = 500


def mark_stored(exc: BaseException) -> None:
    """Note on an interrupt (Ctrl-C, SystemExit) that the write it cut short was stored all
    the same (its COMMIT had gone through), so that whoever keeps the data to write again
    does not store it twice."""
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        setattr(exc, "runyard_write_stored", True)  # noqa: B010 - an attribute of our own


def stored_before(exc: BaseException) -> bool:
    """Was the write that the interrupt ``exc`` cut short stored all the same?"""
    return bool(getattr(exc, "runyard_write_stored", False))


def error_class(code: str) -> type[RunyardError] | None:
    """The error class whose ``code`` is ``code`` (how an error crosses the wire)."""
    pending: list[type[RunyardError]] = [RunyardError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls
        pending.extend(cls.__subclasses__())
    return None
