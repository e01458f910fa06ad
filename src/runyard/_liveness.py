"""How long a supervised run may stay silent before readers call it NotResponding, then Failed.

A script run's supervisor records a heartbeat every ``heartbeat_seconds``. Any reader
(``get_status``, ``get_runs``, ``wait_for_completion``…) marks a run whose heartbeat is
older than ``not_responding_seconds`` NotResponding, and older than ``failed_seconds``
Failed. Environment variables override the defaults, for every process alike.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store.base import Store

DEFAULTS = {
    "RUNYARD_HEARTBEAT_SECONDS": 2.0,
    "RUNYARD_NOT_RESPONDING_SECONDS": 30.0,
    "RUNYARD_FAILED_SECONDS": 120.0,
}


def _setting(name: str) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {raw!r}")
    return value


def heartbeat_seconds() -> float:
    return _setting("RUNYARD_HEARTBEAT_SECONDS")


def expire_silent_runs(store: Store) -> int:
    """Apply the NotResponding / Failed rule; cheap when nothing is late."""
    return store.expire_silent_runs(
        _setting("RUNYARD_NOT_RESPONDING_SECONDS"), _setting("RUNYARD_FAILED_SECONDS")
    )
